import type { BackboneTokenizer } from '../../backbone/tokenizer/index.ts';

/** Label of a position with no target (prompt, padding); the loss's ignore_index. */
export const IGNORE_INDEX = -100;

/** What turning dataset lines into token ids needs from the backbone's tokenizer. */
export type DataTokenizer = Pick<
  BackboneTokenizer,
  'encode' | 'escapeChat' | 'applyChatTemplate' | 'eosTokenId' | 'padTokenId' | 'stopTokenIds' | 'isSpecial'
>;

/** How an overlong example was cut to maxLength (see toTrainingExample). */
export type Truncation = 'none' | 'prompt' | 'completion';

/**
 * One training sequence, already shifted for causal LM training.
 *
 * The full token sequence x_0..x_n (prompt, then completion/assistant tokens, then eos) becomes
 *   inputIds[t] = x_{start+t}                                        t = 0..T-1
 *   labels[t]   = x_{start+t+1} if that token is trained, else -100  (the target for position t is
 *                                                                     the NEXT token)
 * so the loss needs no shifting: cross-entropy(logits[t], labels[t]) with ignore_index -100.
 * The last token x_n is a target only (never an input), and tokens after the last trained one
 * are dropped (a causal model's loss cannot depend on them).
 */
export interface TrainingExample {
  /** 1-based line in the source file. */
  line: number;
  inputIds: Int32Array; // (T)
  labels: Int32Array; // (T)
  /** Positions with a label (!= -100). */
  targetCount: number;
  truncated: Truncation;
  /** Classification examples: the class this line belongs to. */
  classLabel?: string;
}
