/**
 * The p-th percentile (0-100) of samples by the nearest-rank method: the smallest sample that at
 * least p% of the samples do not exceed. The latency tests compare these against limits.
 */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) throw new TypeError('percentile of no samples');
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
