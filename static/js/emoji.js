// The emoji the picker offers (picker.js): a few hundred common ones in a
// few groups, as Unicode text (the system's emoji font draws them; nothing is
// fetched). Each is also a valid reaction: at most 32 bytes of UTF-8, and no
// ASCII letter, digit or space (the server's rule, docs/protocol.md), so no
// keycaps. No DOM: tests/js/emoji.test.mjs checks the list.

const list = (s) => s.split(' ');

export const EMOJI_GROUPS = Object.freeze([
  {
    id: 'smileys',
    name: 'Smileys',
    emoji: list(
      '😀 😃 😄 😁 😆 😅 🤣 😂 🙂 🙃 😉 😊 😇 🥰 😍 🤩 😘 😗 😚 😙 😋 😛 😜 🤪 😝 🤑 🤗 🤭 🤫 🤔 ' +
        '🤐 🤨 😐 😑 😶 😏 😒 🙄 😬 😌 😔 😪 🤤 😴 😷 🤒 🤕 🤢 🤮 🥵 🥶 🥴 😵 🤯 🤠 🥳 😎 🤓 🧐 😕 ' +
        '😟 🙁 😮 😯 😲 😳 🥺 😦 😧 😨 😰 😥 😢 😭 😱 😖 😣 😞 😓 😩 😫 🥱 😤 😡 😠 🤬 😈 💀 💩 🤡 ' +
        '👻 👽 🤖 😺 😸 😹 😻 😼 😽 🙀 😿 😾',
    ),
  },
  {
    id: 'people',
    name: 'People',
    emoji: list(
      '👋 🤚 🖐️ ✋ 🖖 👌 🤌 🤏 ✌️ 🤞 🤟 🤘 🤙 👈 👉 👆 👇 ☝️ 👍 👎 ✊ 👊 🤛 🤜 👏 🙌 👐 🤲 🤝 🙏 ' +
        '✍️ 💅 💪 🦾 👀 👁️ 👄 🧠 👶 🧒 👦 👧 🧑 👨 👩 🧓 👴 👵 🙋 🙆 🙅 🤷 🤦 🙇 💁 🧑‍💻 👩‍💻 👨‍💻 🧑‍🍳 🧑‍🎓 ' +
        '🧑‍🏫 🧑‍⚕️ 🕺 💃 🏃 🚶 👯 🧘 👪 👫 💑',
    ),
  },
  {
    id: 'hearts',
    name: 'Hearts and symbols',
    emoji: list(
      '❤️ 🧡 💛 💚 💙 💜 🤎 🖤 🤍 💔 ❣️ 💕 💞 💓 💗 💖 💘 💝 ❤️‍🔥 💯 💢 💥 💫 💦 💨 🕳️ 💬 💭 💤 ✨ ' +
        '⭐ 🌟 🔥 ⚡ ✅ ❌ ❓ ❗ ⚠️ 🚫 ⛔ 🆗 🆒 🆕 🆘 🔴 🟠 🟡 🟢 🔵 🟣 ⚫ ⚪ ➕ ➖ ✔️ ♻️ 🎵 🎶',
    ),
  },
  {
    id: 'nature',
    name: 'Animals and nature',
    emoji: list(
      '🐶 🐱 🐭 🐹 🐰 🦊 🐻 🐼 🐨 🐯 🦁 🐮 🐷 🐸 🐵 🙈 🙉 🙊 🐔 🐧 🐦 🐤 🦆 🦅 🦉 🦇 🐺 🐗 🐴 🦄 ' +
        '🐝 🐛 🦋 🐌 🐞 🐢 🐍 🦖 🐙 🦑 🦀 🐠 🐟 🐬 🐳 🦈 🐊 🐘 🦒 🐪 🐄 🐑 🐐 🦌 🐕 🐈 🐓 🦃 🕊️ 🐇 ' +
        '🌵 🎄 🌲 🌳 🌴 🌱 🌿 🍀 🍁 🍂 🍃 🍄 🌷 🌹 🥀 🌺 🌸 🌼 🌻 🌞 🌝 🌚 🌙 🌎 🪐 🌈 ☀️ ⛅ 🌧️ ⛈️ ' +
        '❄️ ☃️ ⛄ 🌊 💧',
    ),
  },
  {
    id: 'food',
    name: 'Food and drink',
    emoji: list(
      '🍏 🍎 🍐 🍊 🍋 🍌 🍉 🍇 🍓 🫐 🍒 🍑 🥭 🍍 🥥 🥝 🍅 🥑 🍆 🥔 🥕 🌽 🌶️ 🥒 🥦 🧄 🧅 🍞 🥐 🥖 ' +
        '🧀 🥚 🍳 🥞 🧇 🥓 🍗 🍖 🌭 🍔 🍟 🍕 🥪 🌮 🌯 🥗 🍝 🍜 🍲 🍛 🍣 🍱 🥟 🍤 🍙 🍚 🍦 🍰 🎂 🧁 ' +
        '🍫 🍬 🍭 🍩 🍪 🥜 🍯 ☕ 🍵 🧃 🥤 🧋 🍺 🍻 🥂 🍷 🥃 🍸 🍹 🍾 🧊',
    ),
  },
  {
    id: 'activities',
    name: 'Activities and travel',
    emoji: list(
      '⚽ 🏀 🏈 ⚾ 🎾 🏐 🏉 🎱 🏓 🏸 🥅 🏒 ⛳ 🏹 🎣 🥊 🎽 🛹 ⛸️ 🎿 🏂 🏋️ 🤸 🚴 🏊 🏄 🧗 🏆 🥇 🥈 ' +
        '🥉 🏅 🎖️ 🎫 🎟️ 🎭 🎨 🎬 🎤 🎧 🎼 🎹 🥁 🎷 🎺 🎸 🎻 🎲 🧩 🎮 🎯 🎳 🎉 🎊 🎈 🎁 🎀 🎃 🎆 🎇 ' +
        '🚗 🚕 🚌 🚎 🏎️ 🚓 🚑 🚒 🚚 🚲 🛴 🛵 🏍️ 🚂 🚆 🚇 🚊 ✈️ 🛫 🛬 🚀 🛸 🚁 ⛵ 🚤 🛳️ ⚓ 🗺️ 🗽 🗼 ' +
        '🏰 🏯 🏟️ 🎡 🎢 🏖️ 🏝️ 🏜️ 🌋 ⛰️ 🏔️ 🏕️ 🏠 🏡 🏢 🏥 🏦 🏨 🏫 ⛪',
    ),
  },
  {
    id: 'objects',
    name: 'Objects',
    emoji: list(
      '⌚ 📱 💻 ⌨️ 🖥️ 🖨️ 🖱️ 💾 💿 📷 📸 📹 🎥 📞 ☎️ 📺 📻 ⏰ ⏳ 🔋 🔌 💡 🔦 🕯️ 💸 💵 💰 💳 💎 ⚖️ ' +
        '🔧 🔨 🛠️ ⚙️ 🔩 🧲 🧰 🔫 💣 🔪 🛡️ 🔮 💊 💉 🧬 🦠 🧹 🧺 🧻 🚽 🛁 🔑 🗝️ 🚪 🛋️ 🛏️ 🧸 🛍️ 🛒 ' +
        '✉️ 📩 📦 📫 📝 📁 📅 📆 📌 📎 ✂️ 🖊️ ✏️ 🔍 🔒 🔓 📚 📖 🔖 📰 🗑️ 📣 🔔 🔕 🏷️',
    ),
  },
]);
