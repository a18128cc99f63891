package main

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// legacyManifest is testdata/data-<release>.json (see testdata/README.md):
// what the fixture's data directory holds, as written through the API of
// that release, and what the old server answered.
type legacyManifest struct {
	Release     string
	GeneratedAt int64
	Users       []struct {
		ID, Nick, Terminal string
		Type               int
		Tokens             []string
	}
	Messages []legacyMsg
	Group    string
	Members  []string
	Offline  map[string]legacyQueues
	ChatInfo []struct {
		From, To                                                      string
		PendingReplyNum, LastedContactsNum, AllContactsNum, UnReadNum int
	}
	Unread map[string]map[string]int // cmd 17: owner → peer → unReadNum
}

type legacyMsg struct {
	ID, From, To string
	Group        string `json:"groupId"`
	Content      string
	Seq          int
	CreateTime   int64
	Ack          int
	ClientID     bool `json:"clientId"`
	Recalled     bool
}

type legacyQueues struct {
	Friends map[string][]string
	Groups  map[string][]string
}

// legacyCounts is what chatInfo answers for (from, to).
type legacyCounts struct {
	from, to                     string
	pending, lasted, all, unread int
}

// legacyRelease is what a release's fixture tells apart from the others:
// its name (testdata/data-<name>.tar.gz and .json) and where the old
// server's counts differ from what PROTOCOL says and the current gateway
// answers.
type legacyRelease struct {
	name string
	// oldUnread is the unReadNum the old server answered (chatInfo and
	// cmd 17, recorded in the manifest) for the pairs from → to where it
	// is not what the current gateway must answer.
	oldUnread map[[2]string]int
}

// legacyWorld is the current gateway running on the fixture, with what
// the test expects of it.
type legacyWorld struct {
	t     *testing.T
	ts    *testServer
	m     legacyManifest
	convs map[string][]legacyMsg // conversation key → messages in seq order
	epoch string                 // the login data's epoch, once seen
}

func legacyConv(m legacyMsg) string {
	if m.Group != "" {
		return "g:" + m.Group
	}
	a, b := m.From, m.To
	if b < a {
		a, b = b, a
	}
	return "p:" + a + "|" + b
}

// extractTarGz unpacks archive into dst.
func extractTarGz(t testing.TB, archive, dst string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Join(dst, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(name, dst+string(filepath.Separator)) || h.Typeflag != tar.TypeReg {
			t.Fatalf("unexpected archive entry %q", h.Name)
		}
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// PROTOCOL §4.3 (nothing acked is ever lost) across an upgrade: the data
// directory of release a9f4499 (testdata/README.md) keeps working with the
// current gateway: its tokens log in, histories are intact and gap-free,
// offline queues pull, counts match (following PROTOCOL where it fixed the
// old server), group membership and queues work, new messages continue the
// seqs, and a restart keeps it all.
func TestSection4_3_DataDirOfReleaseA9f4499(t *testing.T) {
	pebbleOnly(t)
	testLegacyDataDir(t, legacyRelease{
		name: "a9f4499",
		// a9f4499 never decremented the stored unread counter on recall:
		// it still counts seq 4 of visitor_v1 ↔ agent_a1 and seq 2 of
		// visitor_v1 → consultant_c1. PROTOCOL §4.5, §7.5: a recalled
		// message is never unread, so the current gateway answers 2.
		oldUnread: map[[2]string]int{
			{"visitor_v1", "agent_a1"}:      3,
			{"consultant_c1", "visitor_v1"}: 3,
		},
	})
}

// PROTOCOL §4.3 across an upgrade from release 8a27658, the release
// deployed before contact record v3 and the o| index: the same checks as
// for a9f4499 (testdata/README.md). 8a27658 already counted recalled
// messages as read, so its answers are PROTOCOL's.
func TestSection4_3_DataDirOfRelease8a27658(t *testing.T) {
	pebbleOnly(t)
	testLegacyDataDir(t, legacyRelease{name: "8a27658"})
}

// testLegacyDataDir starts the current gateway on a copy of the release's
// fixture and checks that everything it holds still works.
func testLegacyDataDir(t *testing.T, rel legacyRelease) {
	var m legacyManifest
	b, err := os.ReadFile(filepath.Join("testdata", "data-"+rel.name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m.Release != rel.name {
		t.Fatalf("manifest of release %q in data-%s.json", m.Release, rel.name)
	}
	root := t.TempDir()
	extractTarGz(t, filepath.Join("testdata", "data-"+rel.name+".tar.gz"), root)
	ts := newTestServer(t, func(c *config) { c.DataDir = filepath.Join(root, "data") })
	// One hour after the fixture was written: inside the 48-hour window of
	// lastedContactsNum, past the recall window.
	ts.clock.Advance(time.UnixMilli(m.GeneratedAt).Add(time.Hour).Sub(ts.clock.Now()))
	w := &legacyWorld{t: t, ts: ts, m: m, convs: map[string][]legacyMsg{}}
	for _, msg := range m.Messages {
		k := legacyConv(msg)
		w.convs[k] = append(w.convs[k], msg)
	}
	if len(w.convs) != 5 || len(m.Messages) != 19 {
		t.Fatalf("manifest: %d conversations, %d messages; want 5, 19", len(w.convs), len(m.Messages))
	}

	before := []legacyCounts{
		{"agent_a1", "visitor_v1", 1, 2, 2, 0},
		{"agent_a1", "visitor_v2", 1, 2, 2, 3},
		// Seq 4 is recalled: 2 of the 3 from visitor_v1 are unread.
		{"visitor_v1", "agent_a1", 1, 2, 2, 2},
		{"visitor_v2", "agent_a1", 1, 2, 2, 0},
		{"visitor_v2", "agent_a2", 1, 2, 2, 1},
		{"agent_a2", "visitor_v2", 0, 1, 1, 0},
		// Likewise, seq 2 is recalled.
		{"consultant_c1", "visitor_v1", 1, 1, 1, 2},
		{"visitor_v1", "consultant_c1", 1, 2, 2, 0},
	}
	w.checkOldCounts(before, rel.oldUnread)
	w.checkLogins()
	w.checkHistories()
	w.checkCounts(before)

	// Old message ids keep their idempotency: a resend is acked as the
	// first time and stored nowhere again (not in history, not queued).
	first := w.convs[legacyConv(legacyMsg{From: "visitor_v2", To: "agent_a1"})][0]
	if !first.ClientID || first.From != "visitor_v2" || first.Ack != 10001 {
		t.Fatalf("manifest: first message of visitor_v2 → agent_a1 is %+v, want one with a client id, queued", first)
	}
	v2 := w.connect("visitor_v2")
	v2.send(fmt.Sprintf(`{"cmd":11,"to":"agent_a1","chatType":2,"content":%q,"id":%q}`, first.Content, first.ID))
	want := fmt.Sprintf(`{"code":10001,"command":12,"data":{"createTime":%d,"id":"%s","seq":1},"msg":"offline 用户不在线"}`, first.CreateTime, first.ID)
	if got := v2.read(); got != want {
		t.Errorf("resend of a %s message id:\ngot  %s\nwant %s", rel.name, got, want)
	}
	// Old messages are past the recall window.
	newest := w.last("agent_a1", "visitor_v1")
	if newest.From != "agent_a1" || newest.Recalled {
		t.Fatalf("manifest: newest of agent_a1 ↔ visitor_v1 is %+v, want one agent_a1 sent, not recalled", newest)
	}
	a1 := w.connect("agent_a1")
	a1.send(fmt.Sprintf(`{"cmd":15,"id":%q}`, newest.ID))
	a1.expect(`{"code":10026,"command":16,"msg":"recall failed 撤回失败"}`)
	w.bye(a1, "agent_a1")
	w.bye(v2, "visitor_v2")

	// Offline queues: type 2 shows each one, type 0 takes them all.
	for _, u := range m.Users {
		w.checkQueues(u.ID, m.Offline[u.ID])
	}
	w.checkCounts([]legacyCounts{
		{"agent_a1", "visitor_v2", 1, 2, 2, 0}, // emptied by the pull: read
		{"visitor_v2", "agent_a2", 1, 2, 2, 0},
		{"consultant_c1", "visitor_v1", 1, 1, 1, 0},
		{"visitor_v1", "agent_a1", 1, 2, 2, 2}, // no queue, not pulled: still unread
	})

	// Group membership: every member reads the group's history, the
	// non-member is refused reading and posting.
	v2 = w.connect("visitor_v2")
	v2.send(fmt.Sprintf(`{"cmd":19,"type":1,"groupId":%q}`, m.Group))
	v2.expect(`{"code":10024,"command":20,"msg":"forbidden 无权操作"}`)
	v2.send(fmt.Sprintf(`{"cmd":11,"chatType":1,"groupId":%q,"content":"not a member"}`, m.Group))
	v2.expect(`{"code":10024,"command":12,"msg":"forbidden 无权操作"}`)

	// New messages continue each conversation's seqs; the group queues
	// the offline members.
	a1 = w.connect("agent_a1")
	v1 := w.connect("visitor_v1")
	w.sendPrivate(a1, v2, "agent_a1", "visitor_v2", "升级后第一条", 10000)
	w.bye(v2, "visitor_v2")
	a2 := w.connect("agent_a2")
	w.sendPrivate(a2, nil, "agent_a2", "visitor_v2", "升级后的通知", 10001)
	w.bye(a2, "agent_a2")
	w.sendPrivate(v1, nil, "visitor_v1", "consultant_c1", "还在吗？", 10001)
	g := w.sendGroup(a1, "agent_a1", "升级后的群消息", v1)
	w.bye(a1, "agent_a1")
	w.bye(v1, "visitor_v1")
	w.checkQueues("consultant_c1", legacyQueues{
		Friends: map[string][]string{"visitor_v1": {w.last("visitor_v1", "consultant_c1").ID}},
		Groups:  map[string][]string{m.Group: {g.ID}},
	})
	w.checkQueues("agent_a2", legacyQueues{Groups: map[string][]string{m.Group: {g.ID}}})
	w.checkQueues("visitor_v2", legacyQueues{Friends: map[string][]string{"agent_a2": {w.last("agent_a2", "visitor_v2").ID}}})
	w.checkQueues("agent_a1", legacyQueues{})
	w.checkQueues("visitor_v1", legacyQueues{})
	after := []legacyCounts{
		// agent_a1 answered visitor_v2: no one waits for agent_a1.
		{"agent_a1", "visitor_v2", 0, 2, 2, 0},
		{"agent_a1", "visitor_v1", 0, 2, 2, 0},
		// The push was online; it is unread all the same (§1.3).
		{"visitor_v2", "agent_a1", 2, 2, 2, 1},
		{"visitor_v2", "agent_a2", 2, 2, 2, 0},
		{"agent_a2", "visitor_v2", 0, 1, 1, 0},
		{"consultant_c1", "visitor_v1", 1, 1, 1, 0},
		{"visitor_v1", "consultant_c1", 1, 2, 2, 0},
		{"visitor_v1", "agent_a1", 1, 2, 2, 2},
	}
	w.checkCounts(after)
	w.checkHistories()

	// A restart keeps it all.
	ts.restart()
	w.checkLogins()
	w.checkHistories()
	w.checkCounts(after)
	for _, u := range m.Users {
		w.checkQueues(u.ID, legacyQueues{})
	}
}

// checkOldCounts checks that the manifest records, for each pair of want,
// the counts the current gateway must answer, except the unReadNum of the
// pairs of oldUnread, where the old server answered that instead (in
// chatInfo and in cmd 17 alike). So a fixture made again, or of another
// release, that the old server counted otherwise is noticed here.
func (w *legacyWorld) checkOldCounts(want []legacyCounts, oldUnread map[[2]string]int) {
	w.t.Helper()
	if len(w.m.ChatInfo) != len(want) {
		w.t.Fatalf("manifest: %d chatInfo answers, want %d", len(w.m.ChatInfo), len(want))
	}
	seen := map[[2]string]bool{}
	for i, e := range want {
		pair := [2]string{e.from, e.to}
		seen[pair] = true
		if u, ok := oldUnread[pair]; ok {
			e.unread = u
		}
		ci := w.m.ChatInfo[i]
		got := legacyCounts{ci.From, ci.To, ci.PendingReplyNum, ci.LastedContactsNum, ci.AllContactsNum, ci.UnReadNum}
		if got != e {
			w.t.Errorf("manifest: %s answered chatInfo %+v, want %+v", w.m.Release, got, e)
		}
		if u, ok := w.m.Unread[e.from][e.to]; !ok || u != e.unread {
			w.t.Errorf("manifest: %s answered cmd 17 unReadNum %d (present %v) for %s → %s, want %d", w.m.Release, u, ok, e.from, e.to, e.unread)
		}
	}
	for pair := range oldUnread {
		if !seen[pair] {
			w.t.Errorf("old unread count of %v: no such pair", pair)
		}
	}
}

// last is the newest message of the private conversation of a and b.
func (w *legacyWorld) last(a, b string) legacyMsg {
	l := w.convs[legacyConv(legacyMsg{From: a, To: b})]
	return l[len(l)-1]
}

func (w *legacyWorld) token(user string) string {
	for _, u := range w.m.Users {
		if u.ID == user {
			return u.Tokens[0]
		}
	}
	w.t.Fatalf("no user %s", user)
	return ""
}

// connect logs user in with its first token.
func (w *legacyWorld) connect(user string) *wsClient {
	w.t.Helper()
	return w.ts.login(w.token(user))
}

// bye closes c and waits until user has no live connection, so the next
// message to it is queued.
func (w *legacyWorld) bye(c *wsClient, user string) {
	w.t.Helper()
	c.c.Close()
	w.byeAll(user)
}

// byeAll waits until user is offline (its connections already closed).
func (w *legacyWorld) byeAll(user string) {
	w.t.Helper()
	uid := uidOf(w.t, w.ts, user)
	deadline := time.Now().Add(waitBound())
	for w.ts.online(uid) {
		if time.Now().After(deadline) {
			w.t.Fatalf("%s still online %v after its connections closed", user, waitBound())
		}
		time.Sleep(time.Millisecond)
	}
}

// checkLogins logs in with every token of the fixture: each is its user.
// Every login data carries the same epoch (PROTOCOL §7.7: the old store
// had none, it gets one at its first open and keeps it), across restarts
// too.
func (w *legacyWorld) checkLogins() {
	w.t.Helper()
	for _, u := range w.m.Users {
		for _, tok := range u.Tokens {
			c := w.ts.dial(tok)
			var r struct {
				Code    int
				Command int
				Data    struct {
					ID, Nick, Terminal, Epoch string
					Type                      int
				}
			}
			f := c.read()
			if err := json.Unmarshal([]byte(f), &r); err != nil || r.Code != 10007 || r.Command != 6 ||
				r.Data.ID != u.ID || r.Data.Type != u.Type || r.Data.Nick != u.Nick || r.Data.Terminal != u.Terminal {
				w.t.Errorf("token %s of %s: login frame %s", tok, u.ID, f)
			}
			if w.epoch == "" && epochRE.MatchString(f) {
				w.epoch = r.Data.Epoch
			}
			if !epochRE.MatchString(f) || r.Data.Epoch != w.epoch {
				w.t.Errorf("token %s of %s: login frame %s, want epoch %q", tok, u.ID, f, w.epoch)
			}
			w.bye(c, u.ID)
		}
	}
}

// histMsg is a message as cmd 19 and cmd 17 return it.
type histMsg struct {
	ID, From, To, Content string
	GroupID               string `json:"groupId"`
	Seq                   int
	CreateTime            int64
	ChatType              int
	Recalled              bool
}

// history reads the whole conversation (peer or group) as user sees it.
func (w *legacyWorld) history(c *wsClient, user, peer, group string) []histMsg {
	w.t.Helper()
	var all []histMsg
	after := 0
	for {
		name, key := "fromUserId", peer
		if group != "" {
			name, key = "groupId", group
		}
		c.send(fmt.Sprintf(`{"cmd":19,"type":1,"userId":%q,%q:%q,"afterSeq":%d}`, user, name, key, after))
		f := c.read()
		var r struct {
			Code int
			Data struct {
				Friends map[string][]histMsg
				Groups  map[string][]histMsg
				Userid  string
			}
		}
		if err := json.Unmarshal([]byte(f), &r); err != nil || r.Code != 10018 || r.Data.Userid != user {
			w.t.Fatalf("%s: history of %s%s: %s", user, peer, group, f)
		}
		page := append(r.Data.Friends[peer], r.Data.Groups[group]...)
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
		after = page[len(page)-1].Seq
	}
}

// sameMessages compares what the server returned with the expected
// messages of one conversation; where names the list in errors.
func (w *legacyWorld) sameMessages(where string, got []histMsg, want []legacyMsg) {
	w.t.Helper()
	if len(got) != len(want) {
		w.t.Errorf("%s: %d messages, want %d: %+v", where, len(got), len(want), got)
		return
	}
	for i, g := range got {
		e := want[i]
		content := e.Content
		if e.Recalled {
			content = ""
		}
		if g.ID != e.ID || g.Seq != e.Seq || g.From != e.From || g.To != e.To || g.GroupID != e.Group ||
			g.CreateTime != e.CreateTime || g.Content != content || g.Recalled != e.Recalled {
			w.t.Errorf("%s[%d] = %+v\nwant %+v", where, i, g, e)
		}
	}
}

// checkHistories reads every conversation from every side (each member
// of the group) and checks it against the expected messages, gap-free.
func (w *legacyWorld) checkHistories() {
	w.t.Helper()
	for k, msgs := range w.convs {
		for i, m := range msgs {
			if m.Seq != i+1 {
				w.t.Fatalf("expected %s is not gap-free at %d: %+v", k, i, m)
			}
		}
		var viewers [][2]string // user, peer
		if strings.HasPrefix(k, "g:") {
			for _, u := range w.m.Members {
				viewers = append(viewers, [2]string{u, ""})
			}
		} else {
			a, b, _ := strings.Cut(strings.TrimPrefix(k, "p:"), "|")
			viewers = [][2]string{{a, b}, {b, a}}
		}
		for _, v := range viewers {
			c := w.connect(v[0])
			group := ""
			if v[1] == "" {
				group = w.m.Group
			}
			w.sameMessages(fmt.Sprintf("history %s seen by %s", k, v[0]), w.history(c, v[0], v[1], group), msgs)
			w.bye(c, v[0])
		}
	}
}

// checkCounts checks chatInfo (op 1 on an existing contact, isConcurrent
// 0: it changes nothing) and, for each owner, the chat list of cmd 17.
func (w *legacyWorld) checkCounts(want []legacyCounts) {
	w.t.Helper()
	owners := map[string][]legacyCounts{}
	for _, e := range want {
		code, body := w.ts.post("/im/vanke/chatInfo", fmt.Sprintf(`{"from":%q,"to":%q,"op":1,"isNewMember":0,"isConcurrent":0}`, e.from, e.to))
		var r struct {
			Code int
			Data *struct {
				From, To                                                      string
				PendingReplyNum, LastedContactsNum, AllContactsNum, UnReadNum int
			}
		}
		if code != 200 || json.Unmarshal([]byte(body), &r) != nil || r.Code != 200 || r.Data == nil {
			w.t.Errorf("chatInfo %s→%s: HTTP %d %s", e.from, e.to, code, body)
			continue
		}
		d := r.Data
		if got := (legacyCounts{d.From, d.To, d.PendingReplyNum, d.LastedContactsNum, d.AllContactsNum, d.UnReadNum}); got != e {
			w.t.Errorf("chatInfo %s→%s = pending %d, lasted %d, all %d, unread %d; want %d, %d, %d, %d",
				e.from, e.to, got.pending, got.lasted, got.all, got.unread, e.pending, e.lasted, e.all, e.unread)
		}
		owners[e.from] = append(owners[e.from], e)
	}
	for owner, es := range owners {
		c := w.connect(owner)
		c.send(fmt.Sprintf(`{"cmd":17,"type":2,"userId":%q,"extras":{"pullType":1}}`, owner))
		f := c.read()
		w.bye(c, owner)
		var r struct {
			Code int
			Data struct {
				UserID                                             string
				AllContactsNum, PendingReplyNum, LastedContactsNum int
				Friends                                            []struct {
					UserID         string
					UnReadNum      int
					HistoryMessage []histMsg
				}
			}
		}
		if err := json.Unmarshal([]byte(f), &r); err != nil || r.Code != 200 || r.Data.UserID != owner {
			w.t.Errorf("chat list of %s: %s", owner, f)
			continue
		}
		d := r.Data
		if d.AllContactsNum != es[0].all || d.PendingReplyNum != es[0].pending || d.LastedContactsNum != es[0].lasted {
			w.t.Errorf("chat list of %s: all %d, pending %d, lasted %d; want %d, %d, %d", owner,
				d.AllContactsNum, d.PendingReplyNum, d.LastedContactsNum, es[0].all, es[0].pending, es[0].lasted)
		}
		// Most recent first: by the newest message of each conversation.
		var order []string
		for _, fr := range d.Friends {
			order = append(order, fr.UserID)
		}
		if wantOrder := w.friendsByRecency(owner); !slices.Equal(order, wantOrder) {
			w.t.Errorf("chat list of %s: friends %v, want %v", owner, order, wantOrder)
		}
		for _, fr := range d.Friends {
			for _, e := range es {
				if e.to == fr.UserID && fr.UnReadNum != e.unread {
					w.t.Errorf("chat list of %s: unReadNum of %s = %d, want %d", owner, fr.UserID, fr.UnReadNum, e.unread)
				}
			}
			msgs := w.convs[legacyConv(legacyMsg{From: owner, To: fr.UserID})]
			w.sameMessages(fmt.Sprintf("historyMessage of %s in %s's chat list", fr.UserID, owner), fr.HistoryMessage, msgs[max(0, len(msgs)-10):])
		}
	}
}

// friendsByRecency lists owner's contacts, the most recent conversation
// first (every contact of the fixture has messages).
func (w *legacyWorld) friendsByRecency(owner string) []string {
	type peerTime struct {
		peer string
		t    int64
		seq  int
	}
	var ps []peerTime
	for k, msgs := range w.convs {
		a, b, ok := strings.Cut(strings.TrimPrefix(k, "p:"), "|")
		if !strings.HasPrefix(k, "p:") || !ok || (a != owner && b != owner) {
			continue
		}
		peer := a
		if a == owner {
			peer = b
		}
		last := msgs[len(msgs)-1]
		ps = append(ps, peerTime{peer, last.CreateTime, last.Seq})
	}
	slices.SortFunc(ps, func(x, y peerTime) int { return int(y.t - x.t) })
	var out []string
	for _, p := range ps {
		out = append(out, p.peer)
	}
	return out
}

// checkQueues checks user's offline queues: type 2 per peer and for the
// group (kept), then type 0 without ids (taken, repeated while it returns
// anything), then an empty type 0.
func (w *legacyWorld) checkQueues(user string, want legacyQueues) {
	w.t.Helper()
	c := w.connect(user)
	defer w.bye(c, user)
	ids := func(l []histMsg) []string {
		var out []string
		for _, m := range l {
			out = append(out, m.ID)
		}
		return out
	}
	type reply struct {
		Code int
		Data struct {
			Friends map[string][]histMsg
			Groups  map[string][]histMsg
			More    bool
		}
	}
	for _, u := range w.m.Users {
		if u.ID == user {
			continue
		}
		c.send(fmt.Sprintf(`{"cmd":19,"type":2,"userId":%q,"fromUserId":%q}`, user, u.ID))
		var r reply
		if f := c.read(); json.Unmarshal([]byte(f), &r) != nil || r.Code != 10022 {
			w.t.Fatalf("%s: type 2 of %s: %s", user, u.ID, f)
		}
		if got := ids(r.Data.Friends[u.ID]); !slices.Equal(got, want.Friends[u.ID]) {
			w.t.Errorf("%s's offline queue of %s (type 2): %v, want %v", user, u.ID, got, want.Friends[u.ID])
		}
	}
	if slices.Contains(w.m.Members, user) {
		c.send(fmt.Sprintf(`{"cmd":19,"type":2,"userId":%q,"groupId":%q}`, user, w.m.Group))
		var r reply
		if f := c.read(); json.Unmarshal([]byte(f), &r) != nil || r.Code != 10022 {
			w.t.Fatalf("%s: type 2 of group: %s", user, f)
		}
		if got := ids(r.Data.Groups[w.m.Group]); !slices.Equal(got, want.Groups[w.m.Group]) {
			w.t.Errorf("%s's group queue (type 2): %v, want %v", user, got, want.Groups[w.m.Group])
		}
	}
	got := legacyQueues{Friends: map[string][]string{}, Groups: map[string][]string{}}
	byID := map[string]histMsg{}
	for round := 0; ; round++ {
		if round > 10 {
			w.t.Fatalf("%s: type 0 still returns messages after %d pulls", user, round)
		}
		c.send(fmt.Sprintf(`{"cmd":19,"type":0,"userId":%q}`, user))
		f := c.read()
		var r reply
		if err := json.Unmarshal([]byte(f), &r); err != nil || r.Code != 10016 {
			w.t.Fatalf("%s: type 0: %s", user, f)
		}
		n := 0
		for p, l := range r.Data.Friends {
			got.Friends[p] = append(got.Friends[p], ids(l)...)
			n += len(l)
			for _, m := range l {
				byID[m.ID] = m
			}
		}
		for g, l := range r.Data.Groups {
			got.Groups[g] = append(got.Groups[g], ids(l)...)
			n += len(l)
			for _, m := range l {
				byID[m.ID] = m
			}
		}
		if n == 0 && !r.Data.More {
			break
		}
	}
	same := func(a, b map[string][]string) bool {
		for k, v := range a {
			if len(v) > 0 && !slices.Equal(v, b[k]) {
				return false
			}
		}
		for k, v := range b {
			if len(v) > 0 && !slices.Equal(v, a[k]) {
				return false
			}
		}
		return true
	}
	if !same(got.Friends, want.Friends) || !same(got.Groups, want.Groups) {
		w.t.Errorf("%s's offline queues (type 0): friends %v groups %v\nwant friends %v groups %v", user, got.Friends, got.Groups, want.Friends, want.Groups)
	}
	for id, m := range byID {
		for _, l := range w.convs {
			for _, e := range l {
				if e.ID == id {
					w.sameMessages(user+"'s queued "+id, []histMsg{m}, []legacyMsg{e})
				}
			}
		}
	}
}

// sendPrivate sends from → to over c and checks the ack (wantAck) and,
// if rc is the receiver's connection, the push; it records the message.
func (w *legacyWorld) sendPrivate(c, rc *wsClient, from, to, content string, wantAck int) legacyMsg {
	w.t.Helper()
	w.ts.clock.Advance(time.Second) // chat lists order contacts by time
	c.send(fmt.Sprintf(`{"cmd":11,"to":%q,"chatType":2,"content":%q}`, to, content))
	k := legacyConv(legacyMsg{From: from, To: to})
	ack := c.read()
	a := ackRE.FindStringSubmatch(ack)
	if a == nil || a[1] != fmt.Sprint(wantAck) || a[4] != fmt.Sprint(len(w.convs[k])+1) {
		w.t.Fatalf("%s → %s: ack %s, want %d with seq %d", from, to, ack, wantAck, len(w.convs[k])+1)
	}
	var ct int64
	fmt.Sscan(a[2], &ct)
	m := legacyMsg{ID: a[3], From: from, To: to, Content: content, Seq: len(w.convs[k]) + 1, CreateTime: ct, Ack: wantAck}
	w.convs[k] = append(w.convs[k], m)
	if rc != nil {
		if p := rc.read(); !strings.HasPrefix(p, `{"command":11,`) || !strings.Contains(p, `"id":"`+m.ID+`"`) || !hasSeq(p, m.Seq) {
			w.t.Fatalf("%s: push %s, want %+v", to, p, m)
		}
	}
	return m
}

// sendGroup posts to the fixture's group over c (its user from) and checks
// the ack, the sender's own push and the push to each online member.
func (w *legacyWorld) sendGroup(c *wsClient, from, content string, online ...*wsClient) legacyMsg {
	w.t.Helper()
	w.ts.clock.Advance(time.Second)
	c.send(fmt.Sprintf(`{"cmd":11,"chatType":1,"groupId":%q,"content":%q}`, w.m.Group, content))
	k := "g:" + w.m.Group
	seq := len(w.convs[k]) + 1
	var m legacyMsg
	for _, f := range []string{c.read(), c.read()} {
		if a := ackRE.FindStringSubmatch(f); a != nil {
			if a[1] != "10000" || a[4] != fmt.Sprint(seq) {
				w.t.Fatalf("group ack %s, want 10000 seq %d", f, seq)
			}
			var ct int64
			fmt.Sscan(a[2], &ct)
			m = legacyMsg{ID: a[3], From: from, Group: w.m.Group, Content: content, Seq: seq, CreateTime: ct, Ack: 10000}
		} else if !strings.HasPrefix(f, `{"command":11,`) {
			w.t.Fatalf("%s after a group post: %s", from, f)
		}
	}
	if m.ID == "" {
		w.t.Fatal("no group ack")
	}
	w.convs[k] = append(w.convs[k], m)
	for _, o := range online {
		if p := o.read(); !strings.HasPrefix(p, `{"command":11,`) || !strings.Contains(p, `"id":"`+m.ID+`"`) || !hasSeq(p, seq) {
			w.t.Fatalf("group push %s, want %+v", p, m)
		}
	}
	return m
}

// hasSeq reports whether the push frame f carries "seq":seq.
func hasSeq(f string, seq int) bool {
	s := fmt.Sprintf(`"seq":%d`, seq)
	return strings.Contains(f, s+",") || strings.Contains(f, s+"}")
}
