import { Type, type Static } from 'typebox';

/**
 * Wire messages of a consistency-group cut between an agent and the vault (docs/protocol.md, "Consistency-group
 * cuts"). The vault opens a cut for a group; each member's agent, polling, learns of it and walks a barrier:
 *
 * 1. `prepared`: the agent ran its pre-cut hooks (if the point is to be app-consistent) and is ready to pause.
 *    The vault answers when every member is prepared (or the cut failed).
 * 2. `paused`: the agent holds its disks' writes (cdp: new writes wait; nothing is acknowledged). The vault answers
 *    `proceed` only once every member is paused, so at that moment the set of acknowledged writes on every
 *    machine is one consistent instant; each agent then cuts, releases its writes (a pause of milliseconds) and
 *    ships its point as usual.
 * 3. `result`: the agent reports the point it committed for the cut (or why it could not). When every member's point
 *    is recorded, the vault marks them all with the cut's id in one transaction; if any member fails or a deadline
 *    passes, the cut fails and its points stay ordinary points: there is never a partial group point.
 *
 * An agent never holds writes longer than `pauseSeconds` on its own clock, whatever the vault says: it releases
 * them, does not cut, and reports the failure.
 */

export const GroupCutInstruction = Type.Object({
  cutId: Type.String(),
  group: Type.String(),
  /** Longest the agent may hold writes while waiting for the others to pause. */
  pauseSeconds: Type.Number({ minimum: 0.05 }),
  /** Every member must be paused by then; past it the cut fails. */
  barrierDeadline: Type.String({ format: 'date-time' }),
});
export type GroupCutInstruction = Static<typeof GroupCutInstruction>;

export const GroupCutPoll = Type.Object({ cut: Type.Union([GroupCutInstruction, Type.Null()]) });
export type GroupCutPoll = Static<typeof GroupCutPoll>;

export const BarrierRequest = Type.Object(
  { phase: Type.Union([Type.Literal('prepared'), Type.Literal('paused')]) },
  { additionalProperties: false },
);
export type BarrierRequest = Static<typeof BarrierRequest>;

export const BarrierResponse = Type.Object({
  /** True: every member reached the phase; go on. False: the cut failed (`reason`); release and abandon it. */
  proceed: Type.Boolean(),
  reason: Type.Optional(Type.String()),
});
export type BarrierResponse = Static<typeof BarrierResponse>;

export const CutResultRequest = Type.Union([
  Type.Object({ pointId: Type.String({ minLength: 1, maxLength: 64 }) }, { additionalProperties: false }),
  Type.Object({ error: Type.String({ minLength: 1, maxLength: 2000 }) }, { additionalProperties: false }),
]);
export type CutResultRequest = Static<typeof CutResultRequest>;

export const CutResultResponse = Type.Object({
  /** The cut's state after this report: open (others pending), complete, or failed. */
  state: Type.Union([Type.Literal('open'), Type.Literal('complete'), Type.Literal('failed')]),
});
export type CutResultResponse = Static<typeof CutResultResponse>;

/** Things an agent saw that an operator should know about (recorded as vault events, subject = the machine). */
export const AgentEventRequest = Type.Object(
  {
    type: Type.Union([Type.Literal('app-consistency-failed'), Type.Literal('group-cut-failed')]),
    message: Type.String({ minLength: 1, maxLength: 2000 }),
    details: Type.Optional(Type.Record(Type.String(), Type.Union([Type.String({ maxLength: 2000 }), Type.Number(), Type.Boolean(), Type.Null()]))),
  },
  { additionalProperties: false },
);
export type AgentEventRequest = Static<typeof AgentEventRequest>;
