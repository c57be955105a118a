export type { ChatMessage, ChatTemplateOptions } from './chat-template.ts';
export {
  CHAT_TEMPLATE_FILE,
  GENERATION_CONFIG_FILE,
  TOKENIZER_CONFIG_FILE,
  TOKENIZER_FILE,
} from './files.ts';
export { IncrementalDecoder } from './incremental.ts';
export {
  BackboneTokenizer,
  type DecodeOptions,
  type EncodeOptions,
  type EscapedChat,
  loadTokenizer,
  type NamedToken,
} from './tokenizer.ts';
