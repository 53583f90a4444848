//! Unit tests of the admin command parser. Every expected answer here was
//! checked against memcached 1.6.18.

use super::*;
use crate::protocol::{Request, parse};

fn admin(line: &str) -> Admin {
    match parse(line.as_bytes(), 1024).expect("a whole line").request {
        Request::Admin(admin) => admin,
        other => panic!("{line:?} is not an admin command: {other:?}"),
    }
}

fn reply(reply: AdminReply, noreply: bool) -> Admin {
    Admin::Reply { reply, noreply }
}

#[test]
fn cache_memlimit() {
    use AdminReply::*;
    for (line, want) in [
        (
            "cache_memlimit 32\r\n",
            Admin::MemoryLimit {
                mib: 32,
                noreply: false,
            },
        ),
        (
            "cache_memlimit 32 noreply\r\n",
            Admin::MemoryLimit {
                mib: 32,
                noreply: true,
            },
        ),
        // One token past the form is ignored, as for every command.
        (
            "cache_memlimit 64 a\r\n",
            Admin::MemoryLimit {
                mib: 64,
                noreply: false,
            },
        ),
        (
            "cache_memlimit +64\r\n",
            Admin::MemoryLimit {
                mib: 64,
                noreply: false,
            },
        ),
        // strtoul's value cut to 32 bits, as memcached stores it.
        (
            "cache_memlimit 4294967360\r\n",
            Admin::MemoryLimit {
                mib: 64,
                noreply: false,
            },
        ),
        (
            "cache_memlimit 1000000000\r\n",
            Admin::MemoryLimit {
                mib: 1_000_000_000,
                noreply: false,
            },
        ),
        ("cache_memlimit\r\n", reply(Error, false)),
        ("cache_memlimit 64 a b\r\n", reply(Error, false)),
        ("cache_memlimit x\r\n", reply(Error, false)),
        ("cache_memlimit -5\r\n", reply(Error, false)),
        ("cache_memlimit x noreply\r\n", reply(Error, true)),
        ("cache_memlimit 7\r\n", reply(MemlimitTooSmall, false)),
        ("cache_memlimit -0\r\n", reply(MemlimitTooSmall, false)),
        (
            "cache_memlimit 4294967296\r\n",
            reply(MemlimitTooSmall, false),
        ),
        (
            "cache_memlimit 4 noreply\r\n",
            reply(MemlimitTooSmall, true),
        ),
        (
            "cache_memlimit 1000000001\r\n",
            reply(MemlimitNotMegabytes, false),
        ),
    ] {
        assert_eq!(admin(line), want, "{line:?}");
    }
}

#[test]
fn lru_crawler() {
    use AdminReply::*;
    let classes = |ids: &[u8]| {
        let mut set = ClassSet::default();
        ids.iter().for_each(|&id| set.insert(id));
        Crawl::Classes(set)
    };
    for (line, want) in [
        ("lru_crawler enable\r\n", Admin::CrawlerEnable),
        ("lru_crawler disable\r\n", Admin::CrawlerDisable),
        ("lru_crawler metadump all\r\n", Admin::MetaDump(Crawl::All)),
        (
            "lru_crawler metadump hash\r\n",
            Admin::MetaDump(Crawl::Hash),
        ),
        (
            "lru_crawler metadump 1,2,,63\r\n",
            Admin::MetaDump(classes(&[1, 2, 63])),
        ),
        // Past memcached's 63 the server decides (it may have more).
        (
            "lru_crawler metadump 64\r\n",
            Admin::MetaDump(classes(&[64])),
        ),
        (
            "lru_crawler metadump 0\r\n",
            Admin::MetaDump(Crawl::BadClass),
        ),
        (
            "lru_crawler metadump 1,x\r\n",
            Admin::MetaDump(Crawl::BadClass),
        ),
        (
            "lru_crawler metadump 256\r\n",
            Admin::MetaDump(Crawl::BadClass),
        ),
        ("lru_crawler metadump ,\r\n", Admin::MetaDump(classes(&[]))),
        ("lru_crawler crawl 5\r\n", Admin::Crawl(classes(&[5]))),
        ("lru_crawler crawl hash\r\n", Admin::Crawl(Crawl::Hash)),
        ("lru_crawler sleep 100\r\n", reply(Ok, false)),
        ("lru_crawler sleep 1000000\r\n", reply(Ok, false)),
        ("lru_crawler sleep 1000001\r\n", reply(SleepTooLong, false)),
        ("lru_crawler sleep x\r\n", reply(BadFormat, false)),
        ("lru_crawler tocrawl 5\r\n", reply(Ok, false)),
        ("lru_crawler tocrawl -1\r\n", reply(BadFormat, false)),
        ("lru_crawler\r\n", reply(Error, false)),
        ("lru_crawler metadump\r\n", reply(Error, false)),
        ("lru_crawler metadump all extra\r\n", reply(Error, false)),
        ("lru_crawler metadump all noreply\r\n", reply(Error, false)),
        ("lru_crawler enable x\r\n", reply(Error, false)),
        ("lru_crawler foo bar\r\n", reply(Error, false)),
    ] {
        assert_eq!(admin(line), want, "{line:?}");
    }
}

#[test]
fn slabs() {
    use AdminReply::*;
    for (line, want) in [
        ("slabs reassign 1 2\r\n", Admin::Reassign { src: 1, dst: 2 }),
        (
            "slabs reassign -1 0\r\n",
            Admin::Reassign { src: -1, dst: 0 },
        ),
        (
            "slabs reassign +1 -0\r\n",
            Admin::Reassign { src: 1, dst: 0 },
        ),
        (
            "slabs reassign 4294967297 2\r\n",
            Admin::Reassign { src: 1, dst: 2 },
        ),
        ("slabs reassign x 1\r\n", reply(BadFormat, false)),
        ("slabs reassign 1 2 noreply\r\n", reply(Error, false)),
        ("slabs reassign 1\r\n", reply(Error, false)),
        (
            "slabs automove 1\r\n",
            Admin::Automove {
                level: 1,
                noreply: false,
            },
        ),
        (
            "slabs automove 0 noreply\r\n",
            Admin::Automove {
                level: 0,
                noreply: true,
            },
        ),
        (
            "slabs automove 2 3 4 5\r\n",
            Admin::Automove {
                level: 2,
                noreply: false,
            },
        ),
        ("slabs automove 3\r\n", reply(Error, false)),
        ("slabs automove 3 noreply\r\n", reply(Error, true)),
        ("slabs automove x\r\n", reply(BadFormat, false)),
        ("slabs automove -1\r\n", reply(BadFormat, false)),
        ("slabs automove noreply\r\n", reply(BadFormat, true)),
        ("slabs automove ratio 0.5\r\n", reply(Ok, false)),
        ("slabs automove ratio\r\n", reply(Error, false)),
        ("slabs automove ratio x y\r\n", reply(Error, false)),
        ("slabs automove\r\n", reply(Error, false)),
        ("slabs\r\n", reply(Error, false)),
        ("slabs foo bar\r\n", reply(Error, false)),
    ] {
        assert_eq!(admin(line), want, "{line:?}");
    }
}

#[test]
fn shutdown_forms() {
    for (line, valid) in [
        ("shutdown\r\n", true),
        ("shutdown graceful\r\n", true),
        ("shutdown x\r\n", false),
        ("shutdown noreply\r\n", false),
        ("shutdown graceful x\r\n", false),
    ] {
        let request = parse(line.as_bytes(), 1024).unwrap().request;
        assert_eq!(request, Request::Shutdown { valid }, "{line:?}");
    }
}

#[test]
fn stats_groups() {
    use StatsGroup::*;
    for (args, want) in [
        ("", General),
        ("  ", General),
        ("reset x", Reset),
        ("slabs x", Slabs),
        ("sizes", Sizes),
        ("sizes_enable x", SizesEnable),
        ("sizes_disable", SizesDisable),
        ("detail on", DetailOn),
        ("detail on x", DetailOn),
        ("detail off", DetailOff),
        ("detail dump", DetailDump),
        ("detail", Reply(AdminReply::DetailUsage)),
        ("detail x", Reply(AdminReply::DetailUsage)),
        ("cachedump 1 0", CacheDump { class: 1, limit: 0 }),
        (
            "cachedump  64   2 extra",
            CacheDump {
                class: 64,
                limit: 2,
            },
        ),
        ("cachedump 1", Reply(AdminReply::BadCommandLine)),
        ("cachedump x 0", Reply(AdminReply::BadFormat)),
        ("cachedump -1 0", Reply(AdminReply::BadFormat)),
        ("bogus", Unknown),
    ] {
        assert_eq!(StatsGroup::parse(args.as_bytes()), want, "{args:?}");
    }
}

#[test]
fn numbers_read_as_memcached_reads_them() {
    assert_eq!(c_u32(b"18446744073709551615"), Some(u32::MAX));
    assert_eq!(c_u32(b"18446744073709551616"), None);
    assert_eq!(c_u32(b"-18446744073709551615"), Some(1));
    assert_eq!(c_u32(b"5x"), None);
    assert_eq!(c_u32(b"+"), None);
    assert_eq!(c_i32(b"-2147483649"), Some(i32::MAX));
    assert_eq!(c_i32(b"-9223372036854775808"), Some(0));
    assert_eq!(c_i32(b"-9223372036854775809"), None);
}

#[test]
fn replies_are_memcached_s_lines() {
    for (reply, text) in [
        (
            AdminReply::ShutdownDisabled,
            "ERROR: shutdown not enabled\r\n",
        ),
        (AdminReply::SizesEnabled, "STAT sizes_status enabled\r\n"),
        (
            AdminReply::ReassignNoSpare,
            "NOSPARE source class has no spare pages\r\n",
        ),
    ] {
        assert_eq!(reply.text(), text.as_bytes());
    }
}

#[test]
fn dump_lines_are_memcached_s() {
    let mut out = Vec::new();
    write_metadump_line(
        &mut out,
        b"a:b%20~-._\xff\r",
        -1,
        1796009562,
        2,
        true,
        1,
        69,
    );
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "key=a%3Ab%2520~-._%FF%0D exp=-1 la=1796009562 cas=2 fetch=yes cls=1 size=69\n"
    );
    let mut out = Vec::new();
    assert_eq!(write_cachedump_line(&mut out, b"foo%20", 1, 1796009662), 33);
    write_prefix_line(&mut out, b"a", 2, 1, 1, 1);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "ITEM foo%20 [1 b; 1796009662 s]\r\nPREFIX a get 2 hit 1 set 1 del 1\r\n"
    );
}
