// Messages from the people I block are hidden in the groups we share (the
// server keeps them from reaching me anywhere else): the list comes with the
// page (<body data-blocked>), and each message, rendered or live, carries its
// sender's id. A hidden message keeps its place, so the history stays whole.

const blocked = new Set((document.body.dataset.blocked || '').split(',').filter(Boolean));

function mark(li) {
  if (li.dataset?.senderId && blocked.has(li.dataset.senderId)) li.classList.add('from-blocked');
}

/** Hides what is there, and what arrives later, from the people I block. */
export function watchBlocked(history) {
  if (!history || blocked.size === 0) return;
  history.querySelectorAll('[data-sender-id]').forEach(mark);
  new MutationObserver((changes) => {
    for (const change of changes) {
      change.addedNodes.forEach((node) => {
        if (node.nodeType === Node.ELEMENT_NODE) mark(node);
      });
    }
  }).observe(history, { childList: true });
}
