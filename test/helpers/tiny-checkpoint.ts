// Tests write tiny checkpoints with the same generator `npm start` uses for its default backbone.
export * from '../../gpu-worker/src/backbone/dev/tiny-checkpoint.ts';
