//! The admin commands (`cache_memlimit`, `lru_crawler`, `slabs`, and the
//! groups of `stats`), read as memcached 1.6.18 reads them, and the fixed
//! lines they answer with.
//!
//! Pure, like the rest of the parser. What memcached decides from the line
//! alone (a token count, a number that does not parse, a value out of
//! range) is decided here and comes out as an [`AdminReply`]; what needs
//! the server (its shards, its settings, whether the crawler is enabled)
//! comes out as an [`Admin`] request for the server to answer.
//!
//! Numbers are read the way memcached's `safe_strtoul` and `safe_strtol`
//! read them, quirks included: a leading `+` is fine, `-0` is 0, and a
//! value too large for 32 bits is cut to its low 32 bits (so
//! `cache_memlimit 4294967360` is 64 MiB), because a client that works
//! against memcached must get the same answer here.

use super::tokens::Tokens;

/// The highest slab class memcached's `lru_crawler` and `stats cachedump`
/// take (`MAX_NUMBER_OF_SLAB_CLASSES - 1`). A server with more classes
/// takes its own highest instead.
pub const MEMCACHED_MAX_CLASS: usize = 63;

/// A line an admin command answers with, in memcached 1.6.18's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminReply {
    /// `OK`
    Ok,
    /// `ERROR`: a form the command does not have.
    Error,
    /// `CLIENT_ERROR bad command line format`: a number that does not parse.
    BadFormat,
    /// `CLIENT_ERROR bad command line` (`stats cachedump` without a limit).
    BadCommandLine,
    /// `cache_memlimit` below 8 MiB.
    MemlimitTooSmall,
    /// `cache_memlimit` above 1,000,000,000 (it takes MiB).
    MemlimitNotMegabytes,
    /// `cache_memlimit` the shards cannot take.
    MemlimitFailed,
    /// `lru_crawler crawl|metadump` while the crawler is disabled.
    CrawlerDisabled,
    /// A metadump while as many run as the server allows.
    CrawlerBusy,
    /// A class list with a class that is not one.
    CrawlerBadClass,
    /// `lru_crawler crawl hash` (only a metadump walks the hash table).
    CrawlerError,
    /// A class list with no class in it.
    CrawlerNotStarted,
    /// `lru_crawler enable` while enabled.
    CrawlerStartFailed,
    /// `lru_crawler sleep` over a second.
    SleepTooLong,
    /// `slabs reassign` while a shrink gives pages back.
    ReassignBusy,
    /// `slabs reassign` with a class out of range.
    ReassignBadClass,
    /// `slabs reassign` from a class with fewer than two pages.
    ReassignNoSpare,
    /// `slabs reassign` with source and destination the same.
    ReassignSame,
    /// `shutdown` without `--enable-shutdown`.
    ShutdownDisabled,
    /// `shutdown` with an argument other than `graceful`.
    ShutdownMode,
    /// `stats cachedump` of a class beyond the highest.
    IllegalSlabId,
    /// `stats detail` without `on`, `off` or `dump`.
    DetailUsage,
    /// `stats sizes_enable` (memcached ends it with no `END`).
    SizesEnabled,
    /// `stats sizes_disable` (no `END` either).
    SizesDisabled,
    /// `SERVER_ERROR internal error`: the shard asked panicked (it was
    /// reset; see `ServerState::report`).
    Internal,
}

impl AdminReply {
    /// The whole line, `\r\n` included.
    pub const fn text(self) -> &'static [u8] {
        match self {
            AdminReply::Ok => b"OK\r\n",
            AdminReply::Error => b"ERROR\r\n",
            AdminReply::BadFormat => b"CLIENT_ERROR bad command line format\r\n",
            AdminReply::BadCommandLine => b"CLIENT_ERROR bad command line\r\n",
            AdminReply::MemlimitTooSmall => {
                b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n"
            }
            AdminReply::MemlimitNotMegabytes => {
                b"MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n"
            }
            AdminReply::MemlimitFailed => {
                b"MEMLIMIT_ADJUST_FAILED out of bounds or unable to adjust\r\n"
            }
            AdminReply::CrawlerDisabled => b"CLIENT_ERROR lru crawler disabled\r\n",
            AdminReply::CrawlerBusy => b"BUSY currently processing crawler request\r\n",
            AdminReply::CrawlerBadClass => b"BADCLASS invalid class id\r\n",
            AdminReply::CrawlerError => b"ERROR an unknown error happened\r\n",
            AdminReply::CrawlerNotStarted => b"NOTSTARTED no items to crawl\r\n",
            AdminReply::CrawlerStartFailed => b"ERROR failed to start lru crawler thread\r\n",
            AdminReply::SleepTooLong => b"CLIENT_ERROR sleep must be one second or less\r\n",
            AdminReply::ReassignBusy => b"BUSY currently processing reassign request\r\n",
            AdminReply::ReassignBadClass => b"BADCLASS invalid src or dst class id\r\n",
            AdminReply::ReassignNoSpare => b"NOSPARE source class has no spare pages\r\n",
            AdminReply::ReassignSame => b"SAME src and dst class are identical\r\n",
            AdminReply::ShutdownDisabled => b"ERROR: shutdown not enabled\r\n",
            AdminReply::ShutdownMode => b"CLIENT_ERROR invalid shutdown mode\r\n",
            AdminReply::Internal => b"SERVER_ERROR internal error\r\n",
            AdminReply::IllegalSlabId => b"CLIENT_ERROR Illegal slab id\r\n",
            AdminReply::DetailUsage => b"CLIENT_ERROR usage: stats detail on|off|dump\r\n",
            AdminReply::SizesEnabled => b"STAT sizes_status enabled\r\n",
            AdminReply::SizesDisabled => b"STAT sizes_status disabled\r\n",
        }
    }
}

/// Slab classes by memcached's numbers (1 to 255), as a bit set: plain
/// data, so a request naming them is `Copy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassSet([u64; 4]);

impl ClassSet {
    /// Adds class `id`.
    pub fn insert(&mut self, id: u8) {
        self.0[usize::from(id / 64)] |= 1 << (id % 64);
    }

    /// The classes, smallest first.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (1..256).filter(|&id| self.0[id / 64] & (1 << (id % 64)) != 0)
    }

    /// Whether it holds no class.
    pub fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }
}

/// What `lru_crawler crawl` or `metadump` is asked to cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crawl {
    /// `all`
    All,
    /// `hash`: a metadump walks the hash table instead of the LRUs.
    Hash,
    /// A comma-separated list of class numbers.
    Classes(ClassSet),
    /// A list with something in it that is no class number.
    BadClass,
}

impl Crawl {
    fn parse(token: &[u8]) -> Crawl {
        match token {
            b"all" => return Crawl::All,
            b"hash" => return Crawl::Hash,
            _ => {}
        }
        let mut set = ClassSet::default();
        // memcached splits on commas and skips empty pieces.
        for piece in token.split(|&b| b == b',').filter(|p| !p.is_empty()) {
            match c_u32(piece).and_then(|id| u8::try_from(id).ok()) {
                Some(id) if id >= 1 => set.insert(id),
                _ => return Crawl::BadClass,
            }
        }
        Crawl::Classes(set)
    }
}

/// An admin request the server answers (anything a line alone decides is
/// [`Admin::Reply`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admin {
    /// A fixed answer, decided from the line.
    Reply {
        /// The line to send.
        reply: AdminReply,
        /// Send nothing.
        noreply: bool,
    },
    /// `cache_memlimit <MiB> [noreply]`, with a limit in memcached's range.
    MemoryLimit {
        /// The new limit in MiB.
        mib: u32,
        /// Send nothing.
        noreply: bool,
    },
    /// `lru_crawler enable`
    CrawlerEnable,
    /// `lru_crawler disable`
    CrawlerDisable,
    /// `lru_crawler crawl <classes>`
    Crawl(Crawl),
    /// `lru_crawler metadump <classes>`
    MetaDump(Crawl),
    /// `slabs reassign <src> <dst>`, memcached's class numbers.
    Reassign {
        /// Source class (`-1`: any with a spare page).
        src: i32,
        /// Destination class (`0`: give the page back).
        dst: i32,
    },
    /// `slabs automove <0|1|2> [noreply]`
    Automove {
        /// The level.
        level: u8,
        /// Send nothing.
        noreply: bool,
    },
}

impl Admin {
    fn reply(reply: AdminReply, noreply: bool) -> Admin {
        Admin::Reply { reply, noreply }
    }
}

/// `noreply` as memcached's `set_noreply_maybe` sees it: the last token.
fn last_is_noreply(words: &[&[u8]]) -> bool {
    words.last() == Some(&&b"noreply"[..])
}

/// The tokens after a command, at most `N` (more come back as `None`).
fn words<const N: usize>(tokens: Tokens<'_>) -> Option<([&[u8]; N], usize)> {
    let mut words = [&b""[..]; N];
    let mut count = 0;
    for token in tokens {
        *words.get_mut(count)? = token;
        count += 1;
    }
    Some((words, count))
}

/// `cache_memlimit <MiB> [noreply]`.
pub(super) fn cache_memlimit(tokens: Tokens<'_>) -> Admin {
    let Some((words, count @ 1..=2)) = words::<2>(tokens) else {
        return Admin::reply(AdminReply::Error, false);
    };
    let noreply = last_is_noreply(&words[..count]);
    let reply = |reply| Admin::reply(reply, noreply);
    match c_u32(words[0]) {
        None => reply(AdminReply::Error),
        Some(mib) if mib < 8 => reply(AdminReply::MemlimitTooSmall),
        Some(mib) if mib > 1_000_000_000 => reply(AdminReply::MemlimitNotMegabytes),
        Some(mib) => Admin::MemoryLimit { mib, noreply },
    }
}

/// `lru_crawler <crawl|metadump|tocrawl|sleep> <arg>` or
/// `lru_crawler <enable|disable>`. memcached takes no `noreply` here.
pub(super) fn lru_crawler(tokens: Tokens<'_>) -> Admin {
    let error = Admin::reply(AdminReply::Error, false);
    let Some((words, count)) = words::<2>(tokens) else {
        return error;
    };
    let fixed = |reply| Admin::reply(reply, false);
    match (count, words[0]) {
        (2, b"crawl") => Admin::Crawl(Crawl::parse(words[1])),
        (2, b"metadump") => Admin::MetaDump(Crawl::parse(words[1])),
        // corecache has no background crawler to pace: the settings are
        // taken (checked as memcached checks them) and change nothing.
        (2, b"tocrawl") => match c_u32(words[1]) {
            Some(_) => fixed(AdminReply::Ok),
            None => fixed(AdminReply::BadFormat),
        },
        (2, b"sleep") => match c_u32(words[1]) {
            Some(micros) if micros > 1_000_000 => fixed(AdminReply::SleepTooLong),
            Some(_) => fixed(AdminReply::Ok),
            None => fixed(AdminReply::BadFormat),
        },
        (1, b"enable") => Admin::CrawlerEnable,
        (1, b"disable") => Admin::CrawlerDisable,
        _ => error,
    }
}

/// `slabs reassign <src> <dst>` or `slabs automove <level> [noreply]`
/// (`slabs automove ratio <r>` is taken and changes nothing: corecache's
/// automover has no ratio).
pub(super) fn slabs(mut tokens: Tokens<'_>) -> Admin {
    let (first, second, third, fourth) =
        (tokens.next(), tokens.next(), tokens.next(), tokens.next());
    // `set_noreply_maybe` looks at the last token of the line.
    let last = tokens.last().or(fourth).or(third).or(second);
    match (first, second, third, fourth) {
        (Some(b"reassign"), Some(src), Some(dst), None) => match (c_i32(src), c_i32(dst)) {
            (Some(src), Some(dst)) => Admin::Reassign { src, dst },
            _ => Admin::reply(AdminReply::BadFormat, false),
        },
        (Some(b"automove"), Some(arg), _, _) => {
            let noreply = last == Some(b"noreply");
            let reply = |reply| Admin::reply(reply, noreply);
            if arg == b"ratio" {
                let ratio = third.and_then(|r| std::str::from_utf8(r).ok()?.parse::<f64>().ok());
                return reply(if ratio.is_some() {
                    AdminReply::Ok
                } else {
                    AdminReply::Error
                });
            }
            match c_u32(arg) {
                None => reply(AdminReply::BadFormat),
                Some(level @ 0..=2) => Admin::Automove {
                    level: level as u8,
                    noreply,
                },
                Some(_) => reply(AdminReply::Error),
            }
        }
        _ => Admin::reply(AdminReply::Error, false),
    }
}

/// `shutdown [graceful]`: whether the form is one memcached takes.
pub(super) fn shutdown_form_is_valid(mut tokens: Tokens<'_>) -> bool {
    matches!(
        (tokens.next(), tokens.next()),
        (None, _) | (Some(b"graceful"), None)
    )
}

/// What `stats <args>` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsGroup {
    /// `stats`
    General,
    /// `stats reset`
    Reset,
    /// `stats settings`
    Settings,
    /// `stats items`
    Items,
    /// `stats slabs`
    Slabs,
    /// `stats sizes`
    Sizes,
    /// `stats sizes_enable`
    SizesEnable,
    /// `stats sizes_disable`
    SizesDisable,
    /// `stats conns`
    Conns,
    /// `stats threads` (corecache's own)
    Threads,
    /// `stats detail on`
    DetailOn,
    /// `stats detail off`
    DetailOff,
    /// `stats detail dump`
    DetailDump,
    /// `stats cachedump <class> <limit>`
    CacheDump {
        /// memcached's class number.
        class: u32,
        /// Items at most; 0 for all.
        limit: u32,
    },
    /// A fixed answer (a usage error, a bad number).
    Reply(AdminReply),
    /// A group nobody has.
    Unknown,
}

impl StatsGroup {
    /// Reads the arguments of `stats` (or a binary `stat` key). Like
    /// memcached, only the first word names the group; words after the
    /// ones a group takes are ignored.
    pub fn parse(args: &[u8]) -> StatsGroup {
        let mut tokens = Tokens::new(args);
        let Some(group) = tokens.next() else {
            return StatsGroup::General;
        };
        match group {
            b"reset" => StatsGroup::Reset,
            b"settings" => StatsGroup::Settings,
            b"items" => StatsGroup::Items,
            b"slabs" => StatsGroup::Slabs,
            b"sizes" => StatsGroup::Sizes,
            b"sizes_enable" => StatsGroup::SizesEnable,
            b"sizes_disable" => StatsGroup::SizesDisable,
            b"conns" => StatsGroup::Conns,
            b"threads" => StatsGroup::Threads,
            b"detail" => match tokens.next() {
                Some(b"on") => StatsGroup::DetailOn,
                Some(b"off") => StatsGroup::DetailOff,
                Some(b"dump") => StatsGroup::DetailDump,
                _ => StatsGroup::Reply(AdminReply::DetailUsage),
            },
            b"cachedump" => match (tokens.next(), tokens.next()) {
                (Some(class), Some(limit)) => match (c_u32(class), c_u32(limit)) {
                    (Some(class), Some(limit)) => StatsGroup::CacheDump { class, limit },
                    _ => StatsGroup::Reply(AdminReply::BadFormat),
                },
                _ => StatsGroup::Reply(AdminReply::BadCommandLine),
            },
            _ => StatsGroup::Unknown,
        }
    }
}

/// Appends one line of `lru_crawler metadump`, memcached's
/// `key=<key> exp=<unix|-1> la=<unix> cas=<cas> fetch=<yes|no> cls=<class>
/// size=<bytes>`, ended by `\n` alone as memcached ends them. The key is
/// URI-encoded as memcached encodes it (every byte but ASCII letters,
/// digits and `-._~` as `%XX`), so any key fits on the line.
#[allow(clippy::too_many_arguments)]
pub fn write_metadump_line(
    out: &mut Vec<u8>,
    key: &[u8],
    exp: i64,
    la: u64,
    cas: u64,
    fetched: bool,
    class: usize,
    size: usize,
) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(b"key=");
    for &b in key {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(b" exp=");
    out.extend_from_slice(n.format(exp).as_bytes());
    out.extend_from_slice(b" la=");
    out.extend_from_slice(n.format(la).as_bytes());
    out.extend_from_slice(b" cas=");
    out.extend_from_slice(n.format(cas).as_bytes());
    out.extend_from_slice(if fetched { b" fetch=yes" } else { b" fetch=no" });
    out.extend_from_slice(b" cls=");
    out.extend_from_slice(n.format(class).as_bytes());
    out.extend_from_slice(b" size=");
    out.extend_from_slice(n.format(size).as_bytes());
    out.push(b'\n');
}

/// Appends one line of `stats cachedump`, memcached's
/// `ITEM <key> [<bytes> b; <exptime> s]` (the key raw, the exptime an
/// absolute unix time or 0 for never); returns its length.
pub fn write_cachedump_line(out: &mut Vec<u8>, key: &[u8], bytes: usize, exptime: u64) -> usize {
    let start = out.len();
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(b"ITEM ");
    out.extend_from_slice(key);
    out.extend_from_slice(b" [");
    out.extend_from_slice(n.format(bytes).as_bytes());
    out.extend_from_slice(b" b; ");
    out.extend_from_slice(n.format(exptime).as_bytes());
    out.extend_from_slice(b" s]\r\n");
    out.len() - start
}

/// Appends one line of `stats detail dump`, memcached's
/// `PREFIX <prefix> get <n> hit <n> set <n> del <n>`.
pub fn write_prefix_line(
    out: &mut Vec<u8>,
    prefix: &[u8],
    gets: u64,
    hits: u64,
    sets: u64,
    dels: u64,
) {
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(b"PREFIX ");
    out.extend_from_slice(prefix);
    for (name, value) in [
        (&b" get "[..], gets),
        (b" hit ", hits),
        (b" set ", sets),
        (b" del ", dels),
    ] {
        out.extend_from_slice(name);
        out.extend_from_slice(n.format(value).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// A decimal number as C's `strtoul` reads it into memcached's 32-bit
/// field: an optional sign, digits, nothing else; a value that overflows
/// 64 bits is refused, a negative one too unless it is `-0`, and what is
/// left is cut to its low 32 bits.
fn c_u32(token: &[u8]) -> Option<u32> {
    let (negative, magnitude) = signed_magnitude(token)?;
    let value = if negative {
        magnitude.wrapping_neg()
    } else {
        magnitude
    };
    // memcached refuses a '-' only when the result reads as negative.
    if negative && (value as i64) < 0 {
        return None;
    }
    Some(value as u32)
}

/// A decimal number as C's `strtol` reads it into memcached's 32-bit
/// field: out of the 64-bit range is refused, the rest cut to 32 bits.
fn c_i32(token: &[u8]) -> Option<i32> {
    let (negative, magnitude) = signed_magnitude(token)?;
    let value = if negative {
        0i64.checked_sub_unsigned(magnitude)?
    } else {
        i64::try_from(magnitude).ok()?
    };
    Some(value as i32)
}

fn signed_magnitude(token: &[u8]) -> Option<(bool, u64)> {
    let (negative, digits) = match token.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, token),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits
        .iter()
        .try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .map(|magnitude| (negative, magnitude))
}

#[cfg(test)]
mod tests;
