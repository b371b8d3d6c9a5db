// The status line under the room title: errors and notices, fading after 5 s
// unless sticky.

import { els } from './state.js';

let timer = 0;

export function showStatus(text, sticky = false) {
  const line = els.statusLine;
  if (!line) return;
  line.textContent = text;
  line.classList.add('visible');
  clearTimeout(timer);
  if (!sticky) timer = setTimeout(() => line.classList.remove('visible'), 5000);
}
