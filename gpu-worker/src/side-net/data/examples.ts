import type { ClassificationLine, CompletionLine, DatasetRecord } from '@ladder/schemas';
import { chatTokens } from './chat-turns.ts';
import { toTrainingExample } from './sequence.ts';
import type { DataTokenizer, TrainingExample } from './types.ts';

export interface ExampleOptions {
  /** Positions per example (T); longer sequences are cut as toTrainingExample describes. */
  maxLength: number;
}

/**
 * Classification lines train as completion of the label text: prompt `Text: {text}\nLabel:`,
 * completion ` {label}` + eos. Fixed, so the same text is scored the same way at evaluation;
 * the leading space lets byte-level BPE tokenize the label as the word it is in running text.
 */
export function classificationPrompt(text: string): string {
  return `Text: ${text}\nLabel:`;
}

export function classificationCompletion(label: string): string {
  return ` ${label}`;
}

function eosOf(tokenizer: DataTokenizer): number {
  const eos = tokenizer.eosTokenId;
  if (eos === undefined) throw new Error('the tokenizer has no eos token: completions could not end');
  return eos;
}

/**
 * Prompt (encoded as generation would encode it, special tokens included) then completion then
 * eos; only the completion and eos are trained. Tokenizing the two separately keeps the boundary
 * where generation will have it, and makes the trained tokens decode to exactly the completion.
 */
export function completionExample(
  tokenizer: DataTokenizer,
  value: CompletionLine,
  line: number,
  options: ExampleOptions,
): TrainingExample {
  const prompt = tokenizer.encode(value.prompt, { addSpecialTokens: true });
  const completion = [...tokenizer.encode(value.completion, { addSpecialTokens: false }), eosOf(tokenizer)];
  const tokens = [...prompt, ...completion];
  const trained = tokens.map((_, i) => i >= prompt.length);
  return toTrainingExample(tokens, trained, options.maxLength, line);
}

export function classificationExample(
  tokenizer: DataTokenizer,
  value: ClassificationLine,
  line: number,
  options: ExampleOptions,
): TrainingExample {
  const example = completionExample(
    tokenizer,
    { prompt: classificationPrompt(value.text), completion: classificationCompletion(value.label) },
    line,
    options,
  );
  return { ...example, classLabel: value.label };
}

/**
 * The examples to score one classification text against every label: the trainer takes each
 * one's summed loss over its labelled tokens (label + eos; the eos tells "pos" from "positive"),
 * and argminLabel picks the class.
 */
export function classificationCandidates(
  tokenizer: DataTokenizer,
  text: string,
  labels: readonly string[],
  options: ExampleOptions & { line?: number },
): TrainingExample[] {
  return labels.map((label) => classificationExample(tokenizer, { text, label }, options.line ?? 0, options));
}

/** One validated line -> one example; throws ExampleError (with the line) when it cannot be built. */
export function buildExample(
  tokenizer: DataTokenizer,
  record: DatasetRecord,
  options: ExampleOptions,
): TrainingExample {
  switch (record.format) {
    case 'completion':
      return completionExample(tokenizer, record.value, record.line, options);
    case 'classification':
      return classificationExample(tokenizer, record.value, record.line, options);
    case 'chat': {
      const { tokens, trained } = chatTokens(tokenizer, record.value.messages, record.line);
      return toTrainingExample(tokens, trained, options.maxLength, record.line);
    }
  }
}

/** The class names of a classification file, sorted (code-point order) so ids are stable. */
export function collectLabels(records: readonly DatasetRecord[]): string[] {
  const labels = new Set<string>();
  for (const r of records) if (r.format === 'classification') labels.add(r.value.label);
  return [...labels].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}
