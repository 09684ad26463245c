//! The leaf role's I/O: what a node has while it is a leaf (the last succession notice from
//! its supernode, a pending redirect or promote request, the uplink task) and starting the
//! uplink ([`uplink`]), which joins a supernode and keeps the share list registered there.
//! The decisions (whom to dial, when to promote) are [`kazoo_supernode::election::leaf`]'s.

pub(super) mod uplink;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use kazoo_common::wire::Provider;
use kazoo_supernode::election::Redirect;

use super::{Node, Tasks};
use crate::reachability::{Class, Reachability};

/// What a node has while it is a leaf; dropped whole when it promotes.
pub struct LeafRole {
    /// The last succession notice from its supernode: (heirs, other supernodes).
    succession: Mutex<(Vec<Provider>, Vec<Provider>)>,
    /// Where its supernode redirected it, and why (followed once the connection closed).
    redirect: Mutex<Option<(Vec<Provider>, String)>>,
    /// Its supernode asked it to promote.
    promote_asked: AtomicBool,
    /// What its supernode observed of its reachability.
    reachability: Mutex<Option<Reachability>>,
    /// The uplink task, aborted when the role ends.
    tasks: Tasks,
}

impl LeafRole {
    /// A leaf role that knows of `supernodes` (where a demoted node may join).
    pub(super) fn new(supernodes: Vec<Provider>) -> Arc<Self> {
        Arc::new(LeafRole {
            succession: Mutex::new((Vec::new(), supernodes)),
            redirect: Mutex::new(None),
            promote_asked: AtomicBool::new(false),
            reachability: Mutex::new(None),
            tasks: Tasks::default(),
        })
    }

    /// The last succession notice: (heirs, other supernodes).
    pub(super) fn succession(&self) -> (Vec<Provider>, Vec<Provider>) {
        crate::lock(&self.succession).clone()
    }

    /// What its supernode observed of its reachability (none yet: not told).
    pub(super) fn reachability(&self) -> Option<Reachability> {
        *crate::lock(&self.reachability)
    }

    /// Whether its supernode found it reachable by a dial from outside (not told yet counts
    /// as reachable: the first node of a network is dialled back by nobody).
    pub(super) fn reachable(&self) -> bool {
        self.reachability()
            .is_none_or(|r| r.class == Class::Reachable)
    }

    fn set_reachability(&self, reachability: Reachability) {
        *crate::lock(&self.reachability) = Some(reachability);
    }

    fn set_succession(&self, heirs: Vec<Provider>, supernodes: Vec<Provider>) {
        *crate::lock(&self.succession) = (heirs, supernodes);
    }

    /// A redirect notice from the supernode, to follow once the connection has closed.
    fn set_redirect(&self, to: Vec<Provider>, reason: String) {
        *crate::lock(&self.redirect) = Some((to, reason));
    }

    /// Records a redirect unless one is recorded already (a notice beats a bare close).
    fn set_redirect_if_none(&self, to: Vec<Provider>, reason: String) {
        crate::lock(&self.redirect).get_or_insert((to, reason));
    }

    fn take_redirect(&self) -> Option<(Vec<Provider>, String)> {
        crate::lock(&self.redirect).take()
    }

    /// Ends the role: stops the uplink.
    pub(super) fn stop(&self) {
        self.tasks.abort_all();
    }
}

/// Starts `role`'s uplink on `node` (`first`: a redirect to follow first, for a node that
/// just demoted).
pub(super) fn start(node: &Node, role: &Arc<LeafRole>, first: Option<Redirect>) {
    role.tasks.spawn(uplink::uplink_loop(
        node.clone(),
        Arc::clone(role),
        node.inner.setting,
        first,
    ));
}
