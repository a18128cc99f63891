package storagetest

import (
	"crypto/rand"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/imgate/imgate/storage"
)

// Harness opens stores for the suite.
type Harness struct {
	// Open opens a fresh, empty store. now is the store's clock for time
	// rules (pending-push expiry; nil = time.Now). The store is closed by
	// a t.Cleanup that Open registers.
	Open func(t testing.TB, now func() time.Time) storage.Store
	// Reopen closes s and opens the same store again (same data, same
	// clock), for reopen tests. s may be closed already.
	Reopen func(t testing.TB, s storage.Store) storage.Store
}

// Run runs every case of the suite against stores h opens, each as a
// subtest named after the PROTOCOL section it proves, each on a store of
// its own.
func Run(t *testing.T, h Harness) {
	if h.Open == nil || h.Reopen == nil {
		t.Fatal("storagetest: the Harness needs Open and Reopen")
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(newFixture(t, h)) })
	}
}

// testCase is one case of the suite.
type testCase struct {
	name string
	fn   func(f *fixture)
}

// cases lists the suite, by PROTOCOL section.
var cases = []testCase{
	// §1: users, tokens, contacts, assignment, the store's health.
	{"Section1_1_RegisterAndLookup", testRegisterAndLookup},
	{"Section1_1_RegisterConcurrent", testRegisterConcurrent},
	{"Section1_1_ProfileUpdateVisibleToReaders", testProfileUpdateVisibleToReaders},
	{"Section1_1_UsersAndTokensSurviveReopen", testUsersSurviveReopen},
	{"Section1_1_FifthTokenRevokesOldest", testFifthTokenRevokesOldest},
	{"Section1_1_TokenMovesTerminal", testTokenMovesTerminal},
	{"Section1_1_ConcurrentBindingsKeepFour", testConcurrentBindingsKeepFour},
	{"Section1_1_SweepPurgesExpiredTokens", testSweepPurgesExpiredTokens},
	{"Section1_5_RevokeTokens", testRevokeTokens},
	{"Section1_5_RevokeSparesReboundToken", testRevokeSparesReboundToken},
	{"Section1_2_WaitingVisitors", testWaitingVisitors},
	{"Section1_3_ContactCounters", testContactCounters},
	{"Section1_3_ContactRecordsExact", testContactRecordsExact},
	{"Section1_3_TouchAndMarkRead", testTouchAndMarkRead},
	{"Section1_4_PingAndClose", testPingAndClose},
	// §4: private messages, queues, history, recall.
	{"Section4_1_IdempotentResend", testIdempotentResend},
	{"Section4_1_ConcurrentResendsStoreOnce", testConcurrentResendsStoreOnce},
	{"Section4_1_ServerMadeIDs", testServerMadeIDs},
	{"Section4_2_GapFreeSeqUnderConcurrentAppends", testGapFreeSeqUnderConcurrentAppends},
	{"Section4_2_ConcurrentAppendsToOneReceiver", testConcurrentAppendsToOneReceiver},
	{"Section4_3_AppendPrivate", testAppendPrivate},
	{"Section4_3_MessageToSelfMakesNoContact", testMessageToSelf},
	{"Section4_3_OnlineDeliverySettled", testOnlineDeliverySettled},
	{"Section4_3_UnsettledDeliveryExpires", testUnsettledDeliveryExpires},
	{"Section4_3_ExpiryOnAQuietStore", testExpiryOnAQuietStore},
	{"Section4_3_SurvivesReopen", testSurvivesReopen},
	{"Section4_3_ReopenKeepsEverything", testReopenKeepsEverything},
	{"Section4_4_HistoryPaging", testHistoryPaging},
	{"Section4_4_TimeWindowEqualTimes", testTimeWindowEqualTimes},
	{"Section4_4_EmptyPages", testEmptyPages},
	{"Section4_4_OfflinePagesCapped", testOfflinePagesCapped},
	{"Section4_4_PartialPullMarksReadUpToWhatItCarried", testPartialPull},
	{"Section4_4_GroupPullMarksGroupRead", testGroupPull},
	{"Section4_4_QueuePendingQueuesUnsettled", testQueuePending},
	{"Section4_5_RecallRules", testRecallRules},
	{"Section4_5_RecallUpdatesCounts", testRecallUpdatesCounts},
	// §5: groups.
	{"Section5_JoinLeaveAndCap", testJoinLeaveAndCap},
	{"Section5_MembersFollowJoinAndLeave", testMembersFollowJoinAndLeave},
	{"Section5_GroupMessages", testGroupMessages},
	{"Section5_JoinRacingAGroupMessageIsQueued", testJoinRacingAGroupMessage},
	{"Section5_GroupDeliverySettled", testGroupDeliverySettled},
	// §7: acks, cursors, reads, the store's identity.
	{"Section7_2_AckRemovesQueued", testAckRemovesQueued},
	{"Section7_4_LastSeq", testLastSeq},
	{"Section7_4_GroupUnreadWalk", testGroupUnreadWalk},
	{"Section7_5_ReadPrivate", testReadPrivate},
	{"Section7_5_ReadGroup", testReadGroup},
	{"Section7_7_EpochStableAcrossReopen", testEpoch},
}

// waitTimeout bounds every wait of the suite for a store's outcome.
const waitTimeout = 20 * time.Second * raceScale

// expiry is PROTOCOL §4.2's bound on an unsettled push: past it the push
// is queued anyway.
const expiry = 2 * time.Second

// nobody is a uid no case uses: QueuePending(nobody) is a barrier for
// deferred writes.
const nobody = 1 << 40

// clock is a manual clock, the stores' clock for time rules.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

// Now returns the clock's time.
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// fixture is one case's store and clock.
type fixture struct {
	t     *testing.T
	h     Harness
	s     storage.Store
	clock *clock
}

func newFixture(t *testing.T, h Harness) *fixture {
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	s := h.Open(t, c.Now)
	if s == nil {
		t.Fatal("storagetest: Open returned no store")
	}
	return &fixture{t: t, h: h, s: s, clock: c}
}

// reopen closes the store and opens it again.
func (f *fixture) reopen() {
	f.t.Helper()
	f.s = f.h.Reopen(f.t, f.s)
	if f.s == nil {
		f.t.Fatal("storagetest: Reopen returned no store")
	}
}

// await returns what ch delivers, failing t after waitTimeout.
func await[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("%s: no outcome within %v", what, waitTimeout)
	}
	var zero T
	return zero
}

// eventually polls cond until it holds, failing t after limit. Each poll
// first runs nudge, when given.
func (f *fixture) eventually(what string, limit time.Duration, nudge func(), cond func() bool) {
	f.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if nudge != nil {
			nudge()
		}
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func msgID() (id [16]byte) {
	_, _ = rand.Read(id[:])
	return id
}

func name(uid uint64) string { return "u" + strconv.FormatUint(uid, 10) }

// priv is a private message from from to to, at 1000 ms.
func priv(from, to uint64, content string) storage.Message {
	return storage.Message{ID: msgID(), From: from, To: to, FromID: name(from), ToID: name(to), ChatType: storage.ChatPrivate, Content: content, CreateTime: 1000}
}

// grp is a group message from from to group gid (protocol id gname).
func grp(from, gid uint64, gname, content string) storage.Message {
	return storage.Message{ID: msgID(), From: from, FromID: name(from), Group: gid, GroupID: gname, ChatType: storage.ChatGroup, Content: content, CreateTime: 1000}
}

// append stores m and returns its durable result; any failure fails the case.
func (f *fixture) append(m storage.Message, opts storage.AppendOptions) storage.AppendResult {
	f.t.Helper()
	ch := make(chan storage.AppendResult, 1)
	if err := f.s.AppendPrivate(m, opts, func(r storage.AppendResult) { ch <- r }); err != nil {
		f.t.Fatal(err)
	}
	r := await(f.t, ch, "AppendPrivate")
	if r.Err != nil {
		f.t.Fatal(r.Err)
	}
	return r
}

// sendOffline stores m for a receiver with no live connection (10001).
func (f *fixture) sendOffline(m storage.Message) storage.AppendResult {
	f.t.Helper()
	return f.append(m, storage.AppendOptions{Offline: true, ClientID: true})
}

// sendOnline stores m for a receiver online (10000): its push is pending.
func (f *fixture) sendOnline(m storage.Message) storage.AppendResult {
	f.t.Helper()
	r := f.append(m, storage.AppendOptions{ClientID: true})
	if r.Delivery == (storage.Delivery{}) {
		f.t.Fatalf("message %d→%d stored online has no delivery to settle", m.From, m.To)
	}
	return r
}

// appendGroup stores a group message; any failure fails the case.
func (f *fixture) appendGroup(m storage.Message, online, offline []uint64, opts storage.AppendOptions) storage.AppendResult {
	f.t.Helper()
	return f.appendGroupVer(m, online, offline, f.s.MembershipVersion(m.Group), opts)
}

func (f *fixture) appendGroupVer(m storage.Message, online, offline []uint64, ver uint64, opts storage.AppendOptions) storage.AppendResult {
	f.t.Helper()
	ch := make(chan storage.AppendResult, 1)
	if err := f.s.AppendGroup(m, online, offline, ver, opts, func(r storage.AppendResult) { ch <- r }); err != nil {
		f.t.Fatal(err)
	}
	r := await(f.t, ch, "AppendGroup")
	if r.Err != nil {
		f.t.Fatal(r.Err)
	}
	return r
}

func (f *fixture) done(what string, submit func(done func(error)) error) {
	f.t.Helper()
	ch := make(chan error, 1)
	if err := submit(func(err error) { ch <- err }); err != nil {
		f.t.Fatalf("%s: %v", what, err)
	}
	if err := await(f.t, ch, what); err != nil {
		f.t.Fatalf("%s: %v", what, err)
	}
}

func (f *fixture) touch(a, b uint64, now int64, opts storage.TouchOptions) {
	f.t.Helper()
	f.done("Touch", func(done func(error)) error { return f.s.Touch(a, b, now, opts, done) })
}

func (f *fixture) markRead(owner, peer uint64) {
	f.t.Helper()
	f.done("MarkRead", func(done func(error)) error { return f.s.MarkRead(owner, peer, done) })
}

func (f *fixture) remove(uid uint64, rs []storage.Removal) {
	f.t.Helper()
	f.done("RemoveOffline", func(done func(error)) error { return f.s.RemoveOffline(uid, rs, done) })
}

// join joins uid to group, capped at maxMembers.
func (f *fixture) join(group string, uid uint64, maxMembers int) (gid uint64, result int) {
	f.t.Helper()
	type res struct {
		gid    uint64
		result int
		err    error
	}
	ch := make(chan res, 1)
	if err := f.s.Join(group, uid, 1, maxMembers, func(gid uint64, result int, err error) { ch <- res{gid, result, err} }); err != nil {
		f.t.Fatal(err)
	}
	r := await(f.t, ch, "Join")
	if r.err != nil {
		f.t.Fatalf("join %s %d: %v", group, uid, r.err)
	}
	return r.gid, r.result
}

// mustJoin joins uid to group, which must take it.
func (f *fixture) mustJoin(group string, uid uint64) uint64 {
	f.t.Helper()
	gid, result := f.join(group, uid, 2000)
	if result != storage.JoinOK || gid == 0 {
		f.t.Fatalf("join %s %d: gid %d result %d", group, uid, gid, result)
	}
	return gid
}

func (f *fixture) leave(gid, uid uint64) bool {
	f.t.Helper()
	type res struct {
		left bool
		err  error
	}
	ch := make(chan res, 1)
	if err := f.s.Leave(gid, uid, func(left bool, err error) { ch <- res{left, err} }); err != nil {
		f.t.Fatal(err)
	}
	r := await(f.t, ch, "Leave")
	if r.err != nil {
		f.t.Fatalf("leave %d %d: %v", gid, uid, r.err)
	}
	return r.left
}

func (f *fixture) recall(from uint64, id [16]byte, notBefore int64) (storage.Message, error) {
	f.t.Helper()
	type res struct {
		m   storage.Message
		err error
	}
	ch := make(chan res, 1)
	if err := f.s.Recall(from, id, notBefore, func(m storage.Message, err error) { ch <- res{m, err} }); err != nil {
		f.t.Fatal(err)
	}
	r := await(f.t, ch, "Recall")
	return r.m, r.err
}

func (f *fixture) mustRecall(from uint64, id [16]byte) storage.Message {
	f.t.Helper()
	m, err := f.recall(from, id, 0)
	if err != nil {
		f.t.Fatalf("recall: %v", err)
	}
	return m
}

func (f *fixture) read(uid, peer uint64, group bool, upTo uint64) storage.ReadResult {
	f.t.Helper()
	type res struct {
		r   storage.ReadResult
		err error
	}
	ch := make(chan res, 1)
	if err := f.s.Read(uid, peer, group, upTo, func(r storage.ReadResult, err error) { ch <- res{r, err} }); err != nil {
		f.t.Fatal(err)
	}
	r := await(f.t, ch, "Read")
	if r.err != nil {
		f.t.Fatalf("read %d %d: %v", uid, peer, r.err)
	}
	return r.r
}

// barrier returns once every deferred write submitted before it (a push
// settled as lost, an ack) is durable: QueuePending of a uid nobody uses.
func (f *fixture) barrier() {
	f.t.Helper()
	if err := f.s.QueuePending(nobody); err != nil {
		f.t.Fatal(err)
	}
}

// queued lists uid's queued seqs from peer, after a barrier.
func (f *fixture) queued(uid, peer uint64) []uint64 {
	f.t.Helper()
	f.barrier()
	return f.queuedNow(uid, peer)
}

// queuedNow is queued without the barrier.
func (f *fixture) queuedNow(uid, peer uint64) []uint64 {
	f.t.Helper()
	res, err := f.s.ReadOffline(uid, storage.QueueQuery{Peer: peer, Limit: 10000})
	if err != nil {
		f.t.Fatal(err)
	}
	var out []uint64
	for _, pg := range res.Friends {
		if pg.Peer != peer {
			f.t.Fatalf("a query of queue %d returned a page of %d", peer, pg.Peer)
		}
		out = append(out, seqs(pg.Msgs)...)
	}
	if len(res.Groups) != 0 {
		f.t.Fatalf("a query of private queue %d returned group pages %+v", peer, res.Groups)
	}
	return out
}

// groupQueued lists uid's queued seqs of group gid, after a barrier.
func (f *fixture) groupQueued(uid, gid uint64) []uint64 {
	f.t.Helper()
	f.barrier()
	return f.groupQueuedNow(uid, gid)
}

// groupQueuedNow is groupQueued without the barrier.
func (f *fixture) groupQueuedNow(uid, gid uint64) []uint64 {
	f.t.Helper()
	res, err := f.s.ReadOffline(uid, storage.QueueQuery{Group: gid, Limit: 10000})
	if err != nil {
		f.t.Fatal(err)
	}
	var out []uint64
	for _, pg := range res.Groups {
		if pg.Peer != gid {
			f.t.Fatalf("a query of group queue %d returned a page of %d", gid, pg.Peer)
		}
		out = append(out, seqs(pg.Msgs)...)
	}
	if len(res.Friends) != 0 {
		f.t.Fatalf("a query of group queue %d returned private pages %+v", gid, res.Friends)
	}
	return out
}

// take is a type 0 pull of uid's private queue of peer (0: all private
// queues) whose reply was written: it reads, then removes what it read and
// marks it read (the whole conversation when the page emptied the queue).
// It returns the seqs carried, by peer.
func (f *fixture) take(uid, peer uint64) map[uint64][]uint64 {
	f.t.Helper()
	f.barrier()
	res, err := f.s.ReadOffline(uid, storage.QueueQuery{Peer: peer, Limit: 10000})
	if err != nil {
		f.t.Fatal(err)
	}
	out := make(map[uint64][]uint64)
	var rs []storage.Removal
	for _, pg := range res.Friends {
		r := storage.Removal{Peer: pg.Peer, ReadTo: pg.LastSeq, Seqs: seqs(pg.Msgs)}
		if pg.More {
			r.ReadTo = pg.Msgs[len(pg.Msgs)-1].Seq
		}
		rs = append(rs, r)
		if len(pg.Msgs) > 0 {
			out[pg.Peer] = r.Seqs
		}
	}
	f.remove(uid, rs)
	return out
}

func (f *fixture) contact(owner, peer uint64) storage.Contact {
	f.t.Helper()
	c, err := f.s.Contact(owner, peer)
	if err != nil {
		f.t.Fatalf("contact %d of %d: %v", peer, owner, err)
	}
	return c
}

func (f *fixture) counts(owner uint64) storage.ContactCounts {
	f.t.Helper()
	n, err := f.s.Counts(owner)
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

// contactOrder lists owner's contacts, most recent first.
func (f *fixture) contactOrder(owner uint64) string {
	f.t.Helper()
	var peers []uint64
	if err := f.s.Contacts(owner, func(c storage.Contact) bool { peers = append(peers, c.Peer); return true }); err != nil {
		f.t.Fatal(err)
	}
	return fmt.Sprint(peers)
}

// conversations lists at most max of owner's conversations (0: all)
// whose last message is older than before.
func (f *fixture) conversations(owner uint64, before int64, max int) string {
	f.t.Helper()
	var peers []uint64
	err := f.s.Conversations(owner, before, func(c storage.Contact) bool {
		peers = append(peers, c.Peer)
		return max == 0 || len(peers) < max
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return fmt.Sprint(peers)
}

func (f *fixture) history(a, b uint64, q storage.HistoryQuery) ([]storage.Message, bool) {
	f.t.Helper()
	h, more, err := f.s.History(a, b, q)
	if err != nil {
		f.t.Fatal(err)
	}
	return h, more
}

func (f *fixture) groupHistory(gid uint64, q storage.HistoryQuery) ([]storage.Message, bool) {
	f.t.Helper()
	h, more, err := f.s.GroupHistory(gid, q)
	if err != nil {
		f.t.Fatal(err)
	}
	return h, more
}

func (f *fixture) lastSeq(uid, peer uint64, group bool) uint64 {
	f.t.Helper()
	n, err := f.s.LastSeq(uid, peer, group)
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

func (f *fixture) members(gid uint64) string {
	f.t.Helper()
	m, err := f.s.Members(gid)
	if err != nil {
		f.t.Fatal(err)
	}
	return fmt.Sprint(m)
}

func (f *fixture) isMember(gid, uid uint64) bool {
	f.t.Helper()
	ok, err := f.s.IsMember(gid, uid)
	if err != nil {
		f.t.Fatal(err)
	}
	return ok
}

func (f *fixture) userGroups(uid uint64) string {
	f.t.Helper()
	g, err := f.s.UserGroups(uid)
	if err != nil {
		f.t.Fatal(err)
	}
	return fmt.Sprint(g)
}

func (f *fixture) groupReadSeq(uid, gid uint64) uint64 {
	f.t.Helper()
	n, err := f.s.GroupReadSeq(uid, gid)
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

func (f *fixture) groupUnread(uid, gid, readSeq, last uint64) uint64 {
	f.t.Helper()
	n, err := f.s.GroupUnread(uid, gid, readSeq, last)
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

func seqs(ms []storage.Message) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.Seq
	}
	return out
}

// str formats seqs as fmt does, [] for none.
func str(s []uint64) string { return fmt.Sprint(s) }

// sorted returns a sorted copy of uids, formatted.
func sorted(uids ...uint64) string {
	s := slices.Clone(uids)
	slices.Sort(s)
	return fmt.Sprint(s)
}

// sameMessage reports how got differs from want, or "".
func sameMessage(got, want storage.Message) string {
	if got.ID != want.ID || got.From != want.From || got.To != want.To || got.FromID != want.FromID ||
		got.ToID != want.ToID || got.ChatType != want.ChatType || got.MsgType != want.MsgType ||
		got.Content != want.Content || string(got.Extras) != string(want.Extras) ||
		got.CreateTime != want.CreateTime || got.Seq != want.Seq || got.GroupID != want.GroupID ||
		got.Group != want.Group || got.Recalled != want.Recalled {
		return fmt.Sprintf("got %+v, want %+v", got, want)
	}
	return ""
}
