export * from '../../gpu-worker/src/backbone/dev/safetensors-writer.ts';
