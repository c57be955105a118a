import htm from 'htm';
import { h } from 'preact';

/** Tagged templates for Preact (htm): JSX-like markup with no compile step. */
export const html = htm.bind(h);
