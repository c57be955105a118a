/**
 * glibc malloc settings for a process that runs training passes. A backbone pass allocates and
 * frees tens of MB per layer; glibc raises its mmap threshold after each large free (up to 32 MB),
 * so later blocks of that size come from the heap and, once freed, stay in the process's memory:
 * a 2k-token LST step kept ~1 GB more than it ever used at once. A fixed threshold sends every
 * block of 1 MB or more to mmap, which gives it back on free. Read at process start, so it is
 * set where a worker is spawned (scripts/platform.ts, the benchmarks); other allocators ignore it.
 */
export const MALLOC_ENV: Readonly<Record<string, string>> = {
  MALLOC_MMAP_THRESHOLD_: String(2 ** 20),
};
