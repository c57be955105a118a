export { AdapterVersion, adapterKey, SafeId, tenantPrefix } from './src/keys.ts';
