import { writeSync } from 'node:fs';

/**
 * Test-only fault injection for the crash test of the leaf digests (test/e2e/agent-crash-after-commit.test.ts): the
 * `onCommitAnswered` hook that kills the agent with SIGKILL once the `n`-th commit of this run that lists changes is
 * answered, before the agent saves its state, forgets the sent commit and completes the cut. The CLI installs it
 * only when REFUGE_TEST_CRASH_AFTER_COMMIT is set. Empty points are not counted: they are committed every second,
 * and counting them would race with the test's writes.
 */
export function crashAfterCommit(n: number): (answer: { pointId: string; changed: boolean; readBytes: number }) => void {
  let changed = 0;
  return (answer) => {
    if (!answer.changed || ++changed !== n) return;
    // Written at once: the logger writes asynchronously, and its line could be lost to the kill.
    writeSync(2, `${JSON.stringify({ level: 40, point: answer.pointId, readBytes: answer.readBytes, msg: 'killed by fault injection: commit answered, state not saved (REFUGE_TEST_CRASH_AFTER_COMMIT)' })}\n`);
    process.kill(process.pid, 'SIGKILL');
  };
}
