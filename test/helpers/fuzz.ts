/**
 * How many generated cases a fuzz property runs: `base` in CI, times $REFUGE_FUZZ_SCALE in a soak run
 * (`npm run soak` sets it), so the same properties prove more with one variable.
 */
export function fuzzRuns(base: number): number {
  const scale = Number(process.env.REFUGE_FUZZ_SCALE ?? '1');
  return Math.max(1, Math.round(base * (Number.isFinite(scale) && scale > 0 ? scale : 1)));
}

/** A test's timeout grown with $REFUGE_FUZZ_SCALE, so a soak run's longer properties are not cut short. */
export function fuzzTimeoutMs(baseMs: number): number {
  return fuzzRuns(baseMs);
}
