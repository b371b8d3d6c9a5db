//! `pairs`: N direct rooms, two users each, one socket per user, both sending.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::Ctx;
use crate::api::{User, bounded};
use crate::load::{self, Load, Shape};
use crate::stats::Report;
use crate::traffic::{self, Expect, Lane};

#[derive(Debug, Clone, clap::Args)]
pub struct Opts {
    /// Direct rooms (two users and two sockets each).
    #[arg(long, default_value_t = 200)]
    pub rooms: usize,
    #[command(flatten)]
    pub load: Load,
}

/// Registers 2N users, opens N rooms, connects and joins 2N sockets.
pub async fn setup(
    ctx: &Ctx,
    rooms: usize,
    tag: &str,
) -> Result<(Vec<(User, User)>, Vec<String>, Vec<f64>)> {
    let t = Instant::now();
    let users = ctx.api.users(&ctx.prefix, tag, rooms * 2).await?;
    let t_users = t.elapsed().as_secs_f64();
    let mut it = users.into_iter();
    let mut pairs = Vec::with_capacity(rooms);
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        pairs.push((a, b));
    }
    let t = Instant::now();
    let rids = ctx.api.rooms(&pairs).await?;
    let t_rooms = t.elapsed().as_secs_f64();
    Ok((pairs, rids, vec![t_users, t_rooms]))
}

/// Connects both users of every pair and joins them to their room (socket `2p`
/// is pair p's first user, `2p + 1` its second), `connect_concurrency` at a time.
/// With several nodes ([`Ctx::targets`]), pair p's first user connects to node
/// `p mod n` and its second to node `(p + 1) mod n`: the two sides of every
/// room are on different nodes, and the rooms are spread evenly over them.
pub async fn join_pairs(
    ctx: &Ctx,
    pairs: &[(User, User)],
    rids: &[String],
) -> Result<
    Vec<(
        crate::sio::Socket,
        tokio::sync::mpsc::UnboundedReceiver<crate::sio::Event>,
    )>,
> {
    let nodes = ctx.targets.len();
    let jobs = pairs
        .iter()
        .zip(rids)
        .enumerate()
        .flat_map(|(p, ((a, b), rid))| {
            [
                (2 * p, p % nodes, a, rid),
                (2 * p + 1, (p + 1) % nodes, b, rid),
            ]
            .map(|(i, node, user, rid)| async move {
                ctx.joined_socket_on(node, &user.token, rid, i).await
            })
        });
    bounded(ctx.connect_concurrency, jobs).await
}

pub async fn run(ctx: &Ctx, o: &Opts) -> Result<Report> {
    if o.rooms == 0 {
        bail!("--rooms must be at least 1");
    }
    o.load.check()?;
    eprintln!("pairs: setting up {} rooms on {}", o.rooms, ctx.url_text());
    let setup_all = async {
        let (pairs, rids, mut times) = setup(ctx, o.rooms, "p").await?;
        let t = Instant::now();
        let sockets = join_pairs(ctx, &pairs, &rids).await?;
        times.push(t.elapsed().as_secs_f64());
        anyhow::Ok((pairs, rids, sockets, times))
    };
    let (pairs, rids, sockets, times) = tokio::time::timeout(ctx.setup_timeout, setup_all)
        .await
        .context("setup timed out")??;
    eprintln!(
        "pairs: setup done: {} users in {:.1} s, {} rooms in {:.1} s, {} sockets joined in {:.1} s",
        pairs.len() * 2,
        times[0],
        rids.len(),
        times[1],
        sockets.len(),
        times[2]
    );

    let pad = traffic::padding(o.load.size);
    let mut lanes = Vec::new();
    let mut expects = Vec::new();
    let mut event_rxs = Vec::new();
    for (i, (socket, events)) in sockets.into_iter().enumerate() {
        let (p, side) = (i / 2, i % 2);
        let peer = if side == 0 { &pairs[p].1 } else { &pairs[p].0 };
        lanes.push(Arc::new(Lane {
            socket: Arc::new(socket),
            rid: rids[p].clone(),
            tag: format!("{}{p}.{side}.", ctx.prefix),
            pad: pad.clone(),
        }));
        expects.push(Expect {
            rid: rids[p].clone(),
            peer_id: peer.id.clone(),
            peer_tag: format!("{}{p}.{}.", ctx.prefix, 1 - side),
        });
        event_rxs.push(events);
    }

    // Sender i's messages go to socket i ^ 1.
    let routes: Vec<(usize, usize)> = (0..lanes.len()).map(|i| (i, i ^ 1)).collect();
    let receivers = event_rxs.into_iter().zip(expects).collect();
    let (w, outcome) = load::drive("pairs", &o.load, lanes, receivers, &routes).await?;
    let shape = Shape {
        scenario: "pairs",
        rooms: o.rooms,
        rooms_text: format!("{} rooms", o.rooms),
        senders: o.rooms * 2,
        receivers_per_message: 1,
    };
    Ok(load::report(ctx, &shape, &o.load, &w, &outcome, &times))
}
