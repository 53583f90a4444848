//! Classic text requests planned: each parsed request (a meta one too,
//! through `meta.rs`) becomes the [`Step`]s its reply needs, one per key
//! of a multi-key get. The binary protocol's planner is `binary.rs`.

use super::admin;
use super::execute::arith_op;
use super::meta;
use super::op::{Op, OpKind, Span, Wire};
use super::plan::{AdminStep, Step};
use crate::protocol::admin::{Admin, AdminReply};
use crate::protocol::{ErrorReply, Reply, Request, StoreKind};

/// Appends the steps of one parsed request (not `quit`) to `plan`.
pub(super) fn plan_one(
    base: &[u8],
    request: Request<'_>,
    shutdown_enabled: bool,
    plan: &mut Vec<Step>,
) {
    let op = |kind, key: &[u8]| Op::new(kind, base, key, Wire::Classic);
    match request {
        Request::Get {
            keys,
            cas,
            touch,
            last,
        } => {
            let kind = OpKind::Get {
                cas,
                touch: touch.is_some(),
            };
            for key in keys {
                plan.push(Step::Op(Op {
                    exptime: touch.unwrap_or(0),
                    ..op(kind, key)
                }));
            }
            if last {
                plan.push(Step::Text(Reply::END));
            }
        }
        Request::Store {
            kind,
            key,
            flags,
            exptime,
            data,
            cas_unique,
            noreply,
        } => plan.push(Step::Op(Op {
            data: Span::within(base, data),
            flags,
            exptime,
            number: cas_unique,
            noreply,
            ..op(OpKind::Store(kind), key)
        })),
        Request::Delete { key, noreply } => plan.push(Step::Op(Op {
            noreply,
            ..op(OpKind::Delete, key)
        })),
        Request::Arith {
            kind,
            key,
            delta,
            noreply,
        } => {
            plan.push(Step::Op(Op {
                number: delta,
                noreply,
                ..op(OpKind::Arith(arith_op(kind)), key)
            }));
        }
        Request::Touch {
            key,
            exptime,
            noreply,
        } => plan.push(Step::Op(Op {
            exptime,
            noreply,
            ..op(OpKind::Touch, key)
        })),
        Request::FlushAll { delay, noreply } => {
            plan.push(Step::Admin(AdminStep::FlushAll { delay, noreply }))
        }
        Request::Stats { args } => plan.push(Step::Admin(AdminStep::Stats(Span::within(
            base,
            args.rest(),
        )))),
        Request::Version => plan.push(Step::Text(admin::VERSION_LINE)),
        Request::Verbosity { noreply } => {
            if !noreply {
                plan.push(Step::Text(Reply::OK));
            }
        }
        Request::Shutdown { valid } => match (shutdown_enabled, valid) {
            (true, true) => plan.push(Step::Admin(AdminStep::Shutdown)),
            (true, false) => plan.push(Step::Text(AdminReply::ShutdownMode.text())),
            (false, _) => plan.push(Step::Text(AdminReply::ShutdownDisabled.text())),
        },
        Request::Admin(Admin::Reply { reply, noreply }) => {
            if !noreply {
                plan.push(Step::Text(reply.text()));
            }
        }
        Request::Admin(Admin::MetaDump(crawl)) => {
            plan.push(Step::Admin(AdminStep::MetaDump(crawl)))
        }
        Request::Admin(command) => plan.push(Step::Admin(AdminStep::Command(command))),
        Request::DebugPanic { key } => plan.push(Step::Op(op(OpKind::DebugPanic, key))),
        Request::DebugHold { key } => plan.push(Step::Op(op(OpKind::DebugHold, key))),
        Request::DebugRelease => plan.push(Step::Admin(AdminStep::DebugRelease)),
        Request::DebugFault { site } => plan.push(Step::Admin(AdminStep::DebugFault(site))),
        Request::TooLarge {
            kind, key, noreply, ..
        } => {
            if kind == StoreKind::Set {
                plan.push(Step::Op(Op {
                    noreply,
                    ..op(OpKind::Discard, key)
                }));
            } else if !noreply {
                plan.push(Step::Error(ErrorReply::TooLarge));
            }
        }
        Request::Invalid { error, noreply, .. } => {
            if !noreply {
                plan.push(Step::Error(error));
            }
        }
        Request::Meta(meta) => plan.push(Step::Op(meta::op(base, &meta))),
        Request::MetaNoop => plan.push(Step::Text(b"MN\r\n")),
        Request::Quit | Request::Unframed { .. } => unreachable!("handled by the caller"),
    }
}
