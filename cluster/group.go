package cluster

import (
	"encoding/binary"
	"slices"
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/imgate/imgate/router"
)

// Group interest (PROTOCOL §5, §8). A node subscribes to a group's subject
// while one of its users with a live connection is a member, so that a
// group message is one publish that reaches exactly the nodes with live
// members. A user's groups are read from the store (Options.UserGroups)
// when their first connection here logs in, before the login reply; joins
// and leaves are told to every node (Membership), like presence.

// groupSub is a subscription held for the local members of a group.
type groupSub struct {
	sub  *nats.Subscription
	refs int
}

// memberChange is a join (in) or leave heard while a user's groups load.
type memberChange struct {
	gid uint64
	in  bool
}

func (n *Node) groupSubject(gid uint64) string {
	return n.opts.Prefix + ".g." + strconv.FormatUint(gid, 10)
}

// loadGroups reads uid's groups and subscribes to them, once per stretch
// of uid's connections here; a call while they are loaded or loading
// does nothing. It blocks on the store.
func (n *Node) loadGroups(uid uint64) {
	if n.opts.UserGroups == nil {
		return
	}
	n.gmu.Lock()
	if _, ok := n.members[uid]; ok || n.loading[uid] != nil {
		n.gmu.Unlock()
		return
	}
	n.loading[uid] = []memberChange{}
	n.gmu.Unlock()
	gids, err := n.opts.UserGroups(uid)
	if err != nil {
		// Its group pushes then reach it only by the queue or sync.
		n.log.Warn("groups of a user not read: group messages reach them by their queue", "uid", uid, "err", err)
	}
	n.gmu.Lock()
	defer n.gmu.Unlock()
	changes := n.loading[uid]
	delete(n.loading, uid)
	if !n.isLocal(uid) {
		return // gone meanwhile
	}
	set := make([]uint64, 0, len(gids))
	for _, gid := range gids {
		set = n.addMemberLocked(set, gid)
	}
	for _, c := range changes {
		if c.in {
			set = n.addMemberLocked(set, c.gid)
		} else {
			set = n.removeMemberLocked(set, c.gid)
		}
	}
	n.members[uid] = set
}

// isLocal reports whether uid has connections (or logins) here. It takes
// mu: never call it while holding mu.
func (n *Node) isLocal(uid uint64) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	u := n.users[uid]
	return u.conns+u.announcing > 0
}

// dropGroups forgets uid's groups: its last connection here closed.
func (n *Node) dropGroups(uid uint64) {
	n.gmu.Lock()
	defer n.gmu.Unlock()
	for _, gid := range n.members[uid] {
		n.unrefLocked(gid)
	}
	delete(n.members, uid)
}

func (n *Node) addMemberLocked(set []uint64, gid uint64) []uint64 {
	if slices.Contains(set, gid) {
		return set
	}
	gs := n.gsubs[gid]
	if gs == nil {
		sub, err := n.nc.Subscribe(n.groupSubject(gid), n.onNode)
		if err != nil {
			n.log.Warn("group subject not subscribed", "gid", gid, "err", err)
			return set
		}
		gs = &groupSub{sub: sub}
		n.gsubs[gid] = gs
	}
	gs.refs++
	return append(set, gid)
}

func (n *Node) removeMemberLocked(set []uint64, gid uint64) []uint64 {
	i := slices.Index(set, gid)
	if i < 0 {
		return set
	}
	n.unrefLocked(gid)
	return slices.Delete(set, i, i+1)
}

func (n *Node) unrefLocked(gid uint64) {
	gs := n.gsubs[gid]
	if gs == nil {
		return
	}
	if gs.refs--; gs.refs <= 0 {
		_ = gs.sub.Unsubscribe()
		delete(n.gsubs, gid)
	}
}

// applyMembership records a join or leave of uid, if uid is local.
func (n *Node) applyMembership(uid, gid uint64, in bool) {
	n.gmu.Lock()
	defer n.gmu.Unlock()
	if ch := n.loading[uid]; ch != nil {
		n.loading[uid] = append(ch, memberChange{gid, in})
		return
	}
	set, ok := n.members[uid]
	if !ok {
		return
	}
	if in {
		n.members[uid] = n.addMemberLocked(set, gid)
	} else {
		n.members[uid] = n.removeMemberLocked(set, gid)
	}
}

// Membership implements router.Cluster: every node learns that uid
// joined (member) or left gid.
func (n *Node) Membership(uid, gid uint64, member bool) {
	n.applyMembership(uid, gid, member)
	if !n.up.Load() {
		return // the others read the store when the user next logs in there
	}
	msg := n.appendHeader(nil, kindMember, 0)
	msg = binary.AppendUvarint(msg, uid)
	msg = binary.AppendUvarint(msg, gid)
	msg = append(msg, boolByte(member))
	_ = n.nc.Publish(n.subjPresence, msg)
}

// DeliverGroup implements router.Cluster: the local members, then one
// publish on the group's subject, which only nodes with live members
// hear. The answers awaited are those of the nodes that hold a followed
// member (by presence); a node that does not answer in time counts as
// not having written its members' pushes.
func (n *Node) DeliverGroup(gid uint64, uids []uint64, frame []byte, trk []router.Tracker) {
	if n.opts.UserGroups == nil {
		n.DeliverEach(uids, frame, trk)
		return
	}
	var expect map[uint64][]int
	remote := false
	var buf [4]uint64
	for i, uid := range uids {
		var t *router.Tracker
		if i < len(trk) {
			t = &trk[i]
		}
		n.local.Deliver(uid, frame, nil, t)
		nodes := n.nodesOf(buf[:0], uid)
		remote = remote || len(nodes) > 0
		if t == nil {
			continue
		}
		for _, node := range nodes {
			if expect == nil {
				expect = make(map[uint64][]int)
			}
			expect[node] = append(expect[node], i)
			t.Acquire()
		}
	}
	if !remote {
		return
	}
	n.stats.pushes.Add(1)
	ptrs := make([]*router.Tracker, len(trk))
	for i := range trk {
		ptrs[i] = &trk[i]
	}
	msg := appendPush(nil, ptrs, uids, frame)
	if expect == nil {
		_ = n.nc.Publish(n.groupSubject(gid), msg)
		return
	}
	n.request(n.groupSubject(gid), msg, &pendingPush{trk: ptrs, expect: expect})
}
