export { EVENT_POSTER_DEFAULTS, type EventPosterOptions, postEvent, postWithRetries } from './events.ts';
export { estimateTrainingMemory, type TrainingMemoryEstimate } from './memory.ts';
export { activationDir, jobDatasetName, type PurgeReport, purgeJobData } from './purge.ts';
export { JobRecord, JobRecordStore } from './records.ts';
export { JobRefusedError, JobRunner, type JobRunnerConfig, type JobView } from './runner.ts';
