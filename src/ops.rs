//! The operations commands (`natter user …`, `backup`, `export`, `migrate`):
//! each opens the database the server uses, does one job through the domain
//! core or the store, prints one line and exits.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead as _, BufWriter, IsTerminal as _, Write};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use futures_util::StreamExt as _;
use sqlx::sqlite::SqliteSynchronous;

use crate::config::{BackupArgs, ExportArgs, HashCostArgs, PasswordArgs, StoreArgs, UserCommand};
use crate::domain::model::{Page, RoomAccess};
use crate::domain::password::HashCost;
use crate::domain::rules::Limits;
use crate::domain::store::Store;
use crate::domain::{self, Natter, Registration};
use crate::files::FileStore;
use crate::files::local::LocalFiles;
use crate::store::{self, Database};

/// Messages read per query while exporting.
const EXPORT_PAGE: i64 = 1000;

/// Opens the database; the rare writes of these commands always sync fully.
async fn open(args: &StoreArgs) -> anyhow::Result<Database> {
    store::open(args, SqliteSynchronous::Full).await
}

/// Refuses to go on when the default SQLite file is missing: a mistyped
/// `--data-dir` must not silently get a new, empty database.
fn require_existing(args: &StoreArgs) -> anyhow::Result<()> {
    let path = args.data_dir.join("natter.db");
    if args.database_url.is_none() && !path.exists() {
        bail!("no database at {} (is --data-dir right?)", path.display());
    }
    Ok(())
}

/// A domain refusal as one line, naming the field at fault.
fn explain(e: domain::Error) -> anyhow::Error {
    match e {
        domain::Error::Field { field, why } => anyhow!("{field}: {why}"),
        domain::Error::Internal(cause) => cause,
        other => anyhow!("{other}"),
    }
}

/// The first line of `--password-file`, or of standard input when it is not a
/// terminal (a terminal would echo it; a flag value would show in `ps`).
fn read_password(args: &PasswordArgs) -> anyhow::Result<String> {
    let text = match &args.password_file {
        Some(path) => {
            fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                bail!("pipe the password on standard input, or pass --password-file");
            }
            let mut line = String::new();
            stdin
                .lock()
                .read_line(&mut line)
                .context("cannot read the password from standard input")?;
            line
        }
    };
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// The domain core on the configured database, hashing at `cost`.
async fn natter(store: &StoreArgs, cost: HashCost) -> anyhow::Result<Natter> {
    Natter::new(open(store).await?.into_store(), Limits::default(), cost)
}

fn cost_of(args: &HashCostArgs) -> HashCost {
    HashCost {
        memory_kib: args.argon2_memory_kib,
        iterations: args.argon2_iterations,
    }
}

/// `natter user create|reset-password|disable`.
pub async fn user(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Create {
            username,
            email,
            admin,
            password,
            cost,
            store,
        } => {
            let password = read_password(&password)?;
            let natter = natter(&store, cost_of(&cost)).await?;
            let form = Registration {
                username,
                email,
                password,
                invite: None,
            };
            let user = natter.register(form, None).await.map_err(explain)?;
            if admin {
                natter.make_admin(&user.email).await.map_err(explain)?;
            }
            println!(
                "created {} {} {} <{}>",
                if admin { "admin" } else { "user" },
                user.id,
                user.username,
                user.email
            );
        }
        UserCommand::ResetPassword {
            email,
            password,
            cost,
            store,
        } => {
            require_existing(&store)?;
            let password = read_password(&password)?;
            let natter = natter(&store, cost_of(&cost)).await?;
            let user = natter
                .reset_password(&email, password)
                .await
                .map_err(explain)?;
            println!(
                "new password set for {} <{}>; their sessions are ended",
                user.username, user.email
            );
        }
        UserCommand::Disable { email, store } => {
            require_existing(&store)?;
            let natter = natter(&store, HashCost::default()).await?;
            let user = natter.disable(&email).await.map_err(explain)?;
            println!(
                "disabled {} <{}>; their sessions are ended (sockets already open stay \
                 connected until they disconnect or the server restarts)",
                user.username, user.email
            );
        }
    }
    Ok(())
}

/// `natter backup FILE`: SQLite only; PostgreSQL has pg_dump.
pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    require_existing(&args.store)?;
    let Database::Sqlite(store) = open(&args.store).await? else {
        bail!(
            "natter backup copies SQLite databases; back PostgreSQL up with \
             `pg_dump -Fc DATABASE_URL > FILE` (docs/operations.md)"
        );
    };
    // Created first, private: the copy holds password hashes and sessions.
    create_private(&args.file, false)?;
    if let Err(e) = store.backup_into(&args.file).await {
        let _ = fs::remove_file(&args.file);
        return Err(e.context(format!("cannot back up to {}", args.file.display())));
    }
    let files = files_dir(&args.store, args.files_dir.as_deref());
    let mut copy = args.file.clone().into_os_string();
    copy.push(".files");
    let copied = copy_tree(&files, Path::new(&copy))
        .with_context(|| format!("cannot copy the attachments' files into {copy:?}"))?;
    println!(
        "backed up to {} (and {copied} attachment files to {})",
        args.file.display(),
        Path::new(&copy).display()
    );
    Ok(())
}

/// Where the server keeps attachments' files (its `--files-dir`).
fn files_dir(store: &StoreArgs, files_dir: Option<&Path>) -> PathBuf {
    files_dir.map_or_else(|| store.data_dir.join("files"), Path::to_path_buf)
}

/// Copies the kept files under `from` into the new directory `to`, in the
/// same layout (not the staging area `tmp/`); returns how many. Kept files
/// never change under their name (it is their hash), so a hard link is a
/// copy, where the file system allows one. A file removed meanwhile (its
/// message was deleted after the database was copied) is skipped.
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<u64> {
    fs::DirBuilder::new().mode(0o700).create(to)?;
    let Ok(entries) = fs::read_dir(from) else {
        return Ok(0);
    };
    let mut copied = 0;
    for entry in entries {
        let entry = entry?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            if entry.file_name() != "tmp" {
                copied += copy_tree(&source, &target)?;
            }
        } else if fs::hard_link(&source, &target).is_ok() || fs::copy(&source, &target).is_ok() {
            copied += 1;
        }
    }
    Ok(copied)
}

/// Creates `path` with mode 0600; `replace` allows overwriting an existing file.
fn create_private(path: &Path, replace: bool) -> anyhow::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).mode(0o600);
    if replace {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

/// `natter export --room RID`: `{"room_id", "messages": [Message…]}` in `seq`
/// order, each message as the JSON API shows it (sender name, timestamp).
pub async fn export(args: ExportArgs) -> anyhow::Result<()> {
    require_existing(&args.store)?;
    let store = open(&args.store).await?.into_store();
    // No user has id 0: this only asks whether the room exists.
    if store.room_access(&args.room, 0).await? == RoomAccess::NoSuchRoom {
        bail!("no such room {:?}", args.room);
    }
    let sink: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(create_private(path, true)?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::new(sink);
    write!(
        out,
        "{{\"room_id\":{},\"messages\":[",
        serde_json::to_string(&args.room)?
    )?;
    let mut after = 0;
    let mut first = true;
    loop {
        let page = Page {
            before: None,
            after: Some(after),
            limit: EXPORT_PAGE,
        };
        let messages = store.messages(&args.room, page).await?;
        for message in &messages {
            out.write_all(if first { b"\n" } else { b",\n" })?;
            first = false;
            serde_json::to_writer(&mut out, message)?;
        }
        match messages.last() {
            Some(last) if messages.len() as i64 == EXPORT_PAGE => after = last.seq,
            _ => break,
        }
    }
    out.write_all(b"\n]}\n")?;
    out.flush()?;
    if let Some(dir) = &args.files {
        let files = LocalFiles::open(&files_dir(&args.store, args.files_dir.as_deref()))?;
        export_files(&*store, &files, &args.room, dir).await?;
    }
    Ok(())
}

/// Copies every attachment of the room's messages to `dir/ID/NAME` (`dir`
/// is created; it must not exist). Names are cleaned at upload: one path
/// component, never `.` or `..`.
async fn export_files(
    store: &dyn Store,
    files: &dyn FileStore,
    rid: &str,
    dir: &Path,
) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let mut after = 0;
    loop {
        let page = Page {
            before: None,
            after: Some(after),
            limit: EXPORT_PAGE,
        };
        let messages = store.messages(rid, page).await?;
        for attachment in messages.iter().flat_map(|m| &m.attachments) {
            let kept = store
                .attachment(&attachment.id)
                .await?
                .with_context(|| format!("attachment {} is gone", attachment.id))?;
            let mut read = files
                .get(&kept.file_key)
                .await?
                .with_context(|| format!("the file of attachment {} is gone", attachment.id))?;
            let folder = dir.join(&attachment.id);
            fs::create_dir(&folder)?;
            let mut out = create_private(&folder.join(&attachment.name), false)?;
            while let Some(chunk) = read.body.next().await {
                out.write_all(&chunk?)?;
            }
        }
        match messages.last() {
            Some(last) if messages.len() as i64 == EXPORT_PAGE => after = last.seq,
            _ => break,
        }
    }
    Ok(())
}

/// `natter migrate`: opening the database applies what is pending.
pub async fn migrate(args: StoreArgs) -> anyhow::Result<()> {
    open(&args).await?;
    println!("the database is up to date");
    Ok(())
}
