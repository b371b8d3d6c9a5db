//! `groups`: N group rooms of M members, one socket per member; in each group
//! one member sends and the other M − 1 receive. It measures fan-out: every
//! acknowledged message must reach M − 1 sockets. Groups are a Natter
//! extension (docs/protocol.md), so the reference peers cannot run it.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::Ctx;
use crate::api::bounded;
use crate::load::{self, Load, Shape};
use crate::stats::Report;
use crate::traffic::{self, Expect, Lane};

#[derive(Debug, Clone, clap::Args)]
pub struct Opts {
    /// Group rooms.
    #[arg(long, default_value_t = 20)]
    pub groups: usize,
    /// Members per group (one sender, the others receive).
    #[arg(long, default_value_t = 10)]
    pub members: usize,
    #[command(flatten)]
    pub load: Load,
}

pub async fn run(ctx: &Ctx, o: &Opts) -> Result<Report> {
    if o.groups == 0 || o.members < 2 {
        bail!("--groups must be at least 1 and --members at least 2");
    }
    o.load.check()?;
    eprintln!(
        "groups: setting up {} groups of {} on {}",
        o.groups, o.members, ctx.url
    );
    let setup = async {
        let t = Instant::now();
        let users = ctx
            .api
            .users(&ctx.prefix, "g", o.groups * o.members)
            .await?;
        let t_users = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let groups: Vec<_> = users.chunks(o.members).map(<[_]>::to_vec).collect();
        let rids = bounded(
            ctx.api.concurrency,
            groups.iter().enumerate().map(|(g, members)| {
                let title = format!("{}group{g}", ctx.prefix);
                async move {
                    ctx.api
                        .create_group(&members[0], &title, &members[1..])
                        .await
                }
            }),
        )
        .await?;
        let t_rooms = t.elapsed().as_secs_f64();
        let t = Instant::now();
        // Socket g·M + m is member m of group g; member 0 sends.
        let jobs = groups
            .iter()
            .zip(&rids)
            .enumerate()
            .flat_map(|(g, (members, rid))| {
                members.iter().enumerate().map(move |(m, user)| async move {
                    ctx.joined_socket(&user.token, rid, g * o.members + m).await
                })
            });
        let sockets = bounded(ctx.connect_concurrency, jobs).await?;
        let times = vec![t_users, t_rooms, t.elapsed().as_secs_f64()];
        anyhow::Ok((groups, rids, sockets, times))
    };
    let (groups, rids, sockets, times) = tokio::time::timeout(ctx.setup_timeout, setup)
        .await
        .context("setup timed out")??;
    eprintln!(
        "groups: setup done: {} users in {:.1} s, {} groups in {:.1} s, {} sockets joined in {:.1} s",
        o.groups * o.members,
        times[0],
        rids.len(),
        times[1],
        sockets.len(),
        times[2]
    );

    let pad = traffic::padding(o.load.size);
    let mut lanes = Vec::new();
    let mut receivers = Vec::new();
    let mut routes = Vec::new();
    // The senders' own event streams stay open (and unread) for the whole run.
    let mut senders_events = Vec::new();
    for (i, (socket, events)) in sockets.into_iter().enumerate() {
        let (g, m) = (i / o.members, i % o.members);
        let tag = format!("{}{g}.", ctx.prefix);
        if m == 0 {
            lanes.push(Arc::new(Lane {
                socket: Arc::new(socket),
                rid: rids[g].clone(),
                tag,
                pad: pad.clone(),
            }));
            senders_events.push(events);
        } else {
            routes.push((g, receivers.len()));
            let expect = Expect {
                rid: rids[g].clone(),
                peer_id: groups[g][0].id.clone(),
                peer_tag: tag,
            };
            // Kept: receivers close their sockets when they are dropped.
            receivers.push((events, expect, socket));
        }
    }
    let (events, sockets): (Vec<_>, Vec<_>) = receivers
        .into_iter()
        .map(|(events, expect, socket)| ((events, expect), socket))
        .unzip();
    let (w, outcome) = load::drive("groups", &o.load, lanes, events, &routes).await?;
    drop((sockets, senders_events));
    let shape = Shape {
        scenario: "groups",
        rooms: o.groups,
        rooms_text: format!("{} groups of {} members", o.groups, o.members),
        senders: o.groups,
        receivers_per_message: o.members - 1,
    };
    Ok(load::report(ctx, &shape, &o.load, &w, &outcome, &times))
}
