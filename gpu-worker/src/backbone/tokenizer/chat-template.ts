import { Template } from '@huggingface/jinja';
import { fail } from '../checkpoint/errors.ts';

/** A chat message as chat templates see it; extra fields (tool_calls, name...) pass through. */
export interface ChatMessage {
  role: string;
  content: string;
  [key: string]: unknown;
}

export interface ChatTemplateOptions {
  /** Append the assistant turn's opening so the model answers (e.g. `<|im_start|>assistant\n`). */
  addGenerationPrompt?: boolean;
  /** A named template when tokenizer_config.json lists several (default: 'default'). */
  templateName?: string;
  tools?: unknown[];
  documents?: unknown[];
  /** Extra template variables (e.g. Qwen3's `enable_thinking`). */
  variables?: Record<string, unknown>;
}

/** Where a template came from, for error messages: the file and the field. */
export interface TemplateSource {
  file: string;
  field: string;
  text: string;
}

/**
 * Picks the template as transformers does: a single string; or, from a list of named templates,
 * the requested name, else 'default'.
 */
export function selectTemplate(
  chatTemplate: string | { name: string; template: string }[] | null | undefined,
  templateFile: string | undefined,
  files: { config: string; templateFile: string },
  name?: string,
): TemplateSource | undefined {
  if (typeof chatTemplate === 'string')
    return { file: files.config, field: 'chat_template', text: chatTemplate };
  if (Array.isArray(chatTemplate)) {
    const want = name ?? 'default';
    const i = chatTemplate.findIndex((t) => t.name === want);
    if (i < 0) {
      const names = chatTemplate.map((t) => t.name).join(', ');
      fail(files.config, 'chat_template', `has no template named '${want}' (it has: ${names})`);
    }
    return { file: files.config, field: `chat_template[${i}] ('${want}')`, text: chatTemplate[i]!.template };
  }
  if (templateFile !== undefined) return { file: files.templateFile, field: 'template', text: templateFile };
  return undefined;
}

const compiled = new WeakMap<TemplateSource, Template>();

/** Renders messages with @huggingface/jinja (trim_blocks and lstrip_blocks on, as transformers sets them). */
export function renderChat(
  source: TemplateSource,
  messages: readonly ChatMessage[],
  options: ChatTemplateOptions,
  specialTokens: Record<string, string | undefined>,
): string {
  let template = compiled.get(source);
  if (!template) {
    try {
      template = new Template(source.text);
    } catch (e) {
      fail(source.file, source.field, `cannot be parsed (${(e as Error).message})`);
    }
    compiled.set(source, template);
  }
  const variables: Record<string, unknown> = {
    ...Object.fromEntries(Object.entries(specialTokens).filter(([, v]) => v !== undefined)),
    ...options.variables,
    messages,
    add_generation_prompt: options.addGenerationPrompt ?? false,
  };
  if (options.tools) variables.tools = options.tools;
  if (options.documents) variables.documents = options.documents;
  try {
    return template.render(variables);
  } catch (e) {
    fail(source.file, source.field, `failed to render (${(e as Error).message})`);
  }
}
