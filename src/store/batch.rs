//! Planning a batch of sends, shared by both stores.
//!
//! PostgreSQL stores a batch with a fixed number of statements whatever its
//! size: one lookup of earlier copies (resends by `client_id`), one bump of
//! each room's counter, one insert of every new message. SQLite's writer
//! thread (`sqlite_writer.rs`) runs one cached statement per row instead, in
//! the same order. Between the lookup and the bump this plan decides, in batch order, which message is a resend of a stored
//! one, which repeats an earlier message of the same batch, and which is new —
//! and so how far each room's `seq` moves.

use std::collections::HashMap;

use crate::domain::model::{Message, UserId};
use crate::domain::store::{Fault, NewMessage, Outcome, StoreError, StoreResult};

/// What identifies a resend: the same sender, room and `client_id`.
type ResendKey<'a> = (&'a str, UserId, &'a str);

/// Where a message of the batch ends up.
enum Slot {
    /// Stored before this batch (a resend).
    Stored(Box<Message>),
    /// New: the index of its row in [`Plan::fresh`].
    Fresh(usize),
    /// A repeat of a new message earlier in this batch (index in `fresh`).
    Repeat(usize),
}

/// How many messages a room receives in this batch, and its latest activity.
pub struct RoomBump<'a> {
    pub rid: &'a str,
    pub count: i64,
    pub latest_ms: i64,
}

pub struct Plan<'a> {
    slots: Vec<Slot>,
    /// The messages to insert, in batch order.
    pub fresh: Vec<&'a NewMessage>,
    /// Each room that receives fresh messages, once.
    pub rooms: Vec<RoomBump<'a>>,
}

/// The `(room, sender, client_id)` of every message that carries a `client_id`:
/// what the lookup of earlier copies asks for.
pub fn resend_keys(batch: &[NewMessage]) -> Vec<ResendKey<'_>> {
    batch
        .iter()
        .filter_map(|m| Some((m.rid.as_str(), m.sender.id, m.client_id.as_deref()?)))
        .collect()
}

impl<'a> Plan<'a> {
    /// Sorts the batch given the messages already stored under its keys.
    pub fn new(batch: &'a [NewMessage], stored: &[Message]) -> Self {
        let mut fresh_by_key: HashMap<ResendKey<'a>, usize> = HashMap::new();
        let mut room_index: HashMap<&'a str, usize> = HashMap::new();
        let mut plan = Plan {
            slots: Vec::with_capacity(batch.len()),
            fresh: Vec::with_capacity(batch.len()),
            rooms: Vec::new(),
        };
        for new in batch {
            let key = new
                .client_id
                .as_deref()
                .map(|cid| (new.rid.as_str(), new.sender.id, cid));
            if let Some(key) = key {
                // Resends are rare: a scan of the few stored copies beats hashing.
                let earlier = stored.iter().find(|m| {
                    m.rid == key.0 && m.sender_id == key.1 && m.client_id.as_deref() == Some(key.2)
                });
                if let Some(message) = earlier {
                    plan.slots.push(Slot::Stored(Box::new(message.clone())));
                    continue;
                }
                if let Some(&first) = fresh_by_key.get(&key) {
                    plan.slots.push(Slot::Repeat(first));
                    continue;
                }
                fresh_by_key.insert(key, plan.fresh.len());
            }
            plan.slots.push(Slot::Fresh(plan.fresh.len()));
            plan.fresh.push(new);
            let room = *room_index.entry(new.rid.as_str()).or_insert_with(|| {
                plan.rooms.push(RoomBump {
                    rid: &new.rid,
                    count: 0,
                    latest_ms: new.now_ms,
                });
                plan.rooms.len() - 1
            });
            let bump = &mut plan.rooms[room];
            bump.count += 1;
            bump.latest_ms = bump.latest_ms.max(new.now_ms);
        }
        plan
    }

    /// The `seq` of each fresh message, given each room's `last_seq` AFTER the
    /// bump: a room's fresh messages take its new numbers in batch order.
    /// Fails if a room is missing (deleted, or never existed).
    pub fn seqs(&self, bumped: &HashMap<String, i64>) -> StoreResult<Vec<i64>> {
        let mut next: HashMap<&str, i64> = HashMap::with_capacity(self.rooms.len());
        for room in &self.rooms {
            let last = bumped
                .get(room.rid)
                .ok_or(StoreError::Database(Fault::NoSuchRoom))?;
            next.insert(room.rid, last - room.count + 1);
        }
        Ok(self
            .fresh
            .iter()
            .map(|m| {
                let seq = next.get_mut(m.rid.as_str()).expect("every room was bumped");
                *seq += 1;
                *seq - 1
            })
            .collect())
    }

    /// The answer for every message of the batch, in batch order, given the
    /// `id` and `seq` of each fresh row (in `fresh` order).
    pub fn finish(self, ids: &[i64], seqs: &[i64]) -> Vec<(Message, Outcome)> {
        let mut created: Vec<Option<Message>> = self
            .fresh
            .iter()
            .zip(ids.iter().zip(seqs))
            .map(|(new, (&id, &seq))| Some(new.stored(id, seq)))
            .collect();
        // Where each fresh message landed in the answer, for its repeats.
        let mut position = vec![0; created.len()];
        let mut answer: Vec<(Message, Outcome)> = Vec::with_capacity(self.slots.len());
        for slot in self.slots {
            let entry = match slot {
                Slot::Stored(message) => (*message, Outcome::Existing),
                Slot::Fresh(i) => {
                    position[i] = answer.len();
                    let message = created[i].take().expect("each fresh message once");
                    (message, Outcome::Created)
                }
                Slot::Repeat(i) => (answer[position[i]].0.clone(), Outcome::Existing),
            };
            answer.push(entry);
        }
        answer
    }
}

/// The id of each fresh row, in `fresh` order, from what the insert returned as
/// `(room, seq, id)`: databases promise no order for returned rows, and
/// `(room, seq)` is unique.
pub fn ids_in_order(
    plan: &Plan<'_>,
    seqs: &[i64],
    mut inserted: Vec<(String, i64, i64)>,
) -> StoreResult<Vec<i64>> {
    let missing = || StoreError::Database(Fault::Inconsistent("an inserted row is missing"));
    if inserted.len() != plan.fresh.len() {
        return Err(missing());
    }
    inserted.sort_unstable_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let mut order: Vec<usize> = (0..plan.fresh.len()).collect();
    order.sort_unstable_by_key(|&i| (&plan.fresh[i].rid, seqs[i]));
    let mut ids = vec![0; order.len()];
    for (i, (rid, seq, id)) in order.into_iter().zip(inserted) {
        if rid != plan.fresh[i].rid || seq != seqs[i] {
            return Err(missing());
        }
        ids[i] = id;
    }
    Ok(ids)
}

/// A batch parameter as one JSON array (the stores unpack it in SQL).
pub fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("tuples of strings and numbers serialize")
}
