import { h } from 'preact';
import htm from 'htm';

/** JSX-like templates without a compile step: htm turns tagged templates into preact vnodes. */
export const html = htm.bind(h);
