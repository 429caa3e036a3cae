//! Book allocation policies (`user.LFS.AllocationPolicy`), built on the free-book index.
//!
//! Differences from the original, each a fix of a bug it documents:
//! * node locality uses the node's real interleave groups (from `FAModules`), not `node_id - 1`,
//!   so JSON topologies whose group ids differ from node ids (e.g. `LATEST.json`) work;
//! * no `#IGs == #nodes` requirement;
//! * `LocalEnc` is implemented: the caller's enclosure, caller's node included, random.

use crate::engine::pool::BookIdx;
use crate::engine::state::State;
use crate::engine::CmdError;
use rand::Rng;

/// Every policy name, in the order `user.LFS.AllocationPolicyList` reports them.
pub const POLICIES: [&str; 11] = [
    "RandomBooks",
    "LocalNode",
    "LocalEnc",
    "NonLocal_Enc",
    "Nearest",
    "NearestRemote",
    "NearestEnc",
    "NearestRack",
    "LZAascending",
    "LZAdescending",
    "RequestIG",
];

pub fn is_policy(name: &str) -> bool {
    POLICIES.contains(&name)
}

/// The default can be any policy but `RequestIG` (which needs a per-file request).
pub fn is_default_policy(name: &str) -> bool {
    is_policy(name) && name != "RequestIG"
}

/// A per-file interleave request: group ids (the low 16 bits) in order, and where to start.
pub struct InterleaveRequest {
    pub groups: Vec<i64>,
    pub pos: usize,
}

/// Picks `n` free books for a shelf of `node_id` under `policy`. On success the books are reserved
/// in the index (the caller then marks them INUSE); on failure nothing is reserved.
pub fn allocate(
    st: &mut State,
    policy: &str,
    node_id: i64,
    n: usize,
    request: Option<&InterleaveRequest>,
    rng: &mut impl Rng,
) -> Result<Vec<BookIdx>, CmdError> {
    // More than the pool has free can never be had: say so before sizing anything by `n` (a
    // write at an offset of 1 EiB asks for 2^37 books; reserving room for them would abort).
    if n as u64 > st.pool.free_total().max(0) as u64 {
        return Err(CmdError::new(libc::ENOSPC, "out of space"));
    }
    let all: Vec<usize> = (0..st.pool.groups.len()).collect();
    let node = st.nodes.get(&node_id);
    let local: Vec<usize> = node.map(|n| n.groups.clone()).unwrap_or_default();
    let enc = node.map(|n| n.enc);
    let groups_where = |pred: &dyn Fn(i64, i64) -> bool| -> Vec<usize> {
        let mut v: Vec<usize> = st
            .nodes
            .values()
            .filter(|o| pred(o.node_id, o.enc))
            .flat_map(|o| o.groups.iter().copied())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let same_enc_others = groups_where(&|id, e| Some(e) == enc && id != node_id);
    let same_enc = groups_where(&|_, e| Some(e) == enc);
    let other_encs = groups_where(&|_, e| Some(e) != enc);
    // In PHYSADDR mode all partitions count as one enclosure, as in the original.
    let physaddr = st.geo.bii_mode == lfs_db::bii::MODE_PHYSADDR;
    // Every group but the node's own (the rest of the machine in PHYSADDR mode).
    let non_local =
        || -> Vec<usize> { all.iter().filter(|g| !local.contains(g)).copied().collect() };
    // The groups `lza` names in LZA mode; in PHYSADDR mode, every group but the node's own.
    let remote = |lza: &Vec<usize>| if physaddr { non_local() } else { lza.clone() };

    let mut out = Vec::with_capacity(n);
    let pool = &mut st.pool;
    match policy {
        "RandomBooks" => pool.take_random(&all, n, rng, &mut out),
        "LocalNode" => pool.take_ordered_across(&local, n, false, &mut out),
        "LocalEnc" => {
            let g = if physaddr { &all } else { &same_enc };
            pool.take_random(g, n, rng, &mut out)
        }
        "NonLocal_Enc" => pool.take_random(&remote(&same_enc_others), n, rng, &mut out),
        "Nearest" => {
            pool.take_ordered_across(&local, n, false, &mut out);
            if !physaddr {
                pool.take_random(&same_enc_others, n, rng, &mut out);
            }
            pool.take_random(&non_local(), n, rng, &mut out);
        }
        "NearestEnc" => {
            pool.take_ordered_across(&local, n, false, &mut out);
            let g = if physaddr { &all } else { &same_enc_others };
            pool.take_random(g, n, rng, &mut out);
        }
        "NearestRemote" => {
            if physaddr {
                pool.take_random(&non_local(), n, rng, &mut out);
            } else {
                pool.take_random(&same_enc_others, n, rng, &mut out);
                pool.take_random(&other_encs, n, rng, &mut out);
            }
        }
        "NearestRack" => pool.take_random(&remote(&other_encs), n, rng, &mut out),
        "LZAascending" => pool.take_ordered_across(&all, n, false, &mut out),
        "LZAdescending" => pool.take_ordered_across(&all, n, true, &mut out),
        "RequestIG" => {
            let Some(req) = request.filter(|r| !r.groups.is_empty()) else {
                return Err(CmdError::new(
                    libc::ERANGE,
                    "RequestIG policy requires prior user.LFS.InterleaveRequest",
                ));
            };
            let mode_tag = st.geo.bii_mode << lfs_db::bii::MODE_SHIFT;
            for i in 0..n {
                let want = req.groups[(req.pos + i) % req.groups.len()];
                let g = pool.group_index(mode_tag | want);
                let before = out.len();
                if let Some(g) = g {
                    pool.take_ordered(g, before + 1, false, &mut out);
                }
                if out.len() == before {
                    pool.unreserve(&out);
                    return Err(CmdError::new(
                        libc::ENOSPC,
                        format!("Not enough books remaining in IG {want}"),
                    ));
                }
            }
        }
        other => {
            return Err(CmdError::new(
                libc::EINVAL,
                format!("Unknown policy \"{other}\""),
            ))
        }
    }
    if out.len() < n {
        pool.unreserve(&out);
        return Err(CmdError::new(libc::ENOSPC, "out of space"));
    }
    Ok(out)
}
