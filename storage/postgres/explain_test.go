package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
)

// The statements a page, a login or a pull runs read a few rows by index
// whatever the tables hold. TestExplain loads tables of a realistic shape
// (many conversations, owners and users, each small) and asserts that the
// plans of the store's own statements, with their parameters bound, scan
// none of the big tables sequentially.

// Shape of the explain data set.
const (
	explainUsers    = 2000 // owners of contacts, queues and tokens
	explainPeers    = 5    // private conversations per user, with the next uids
	explainMsgs     = 10   // messages per private conversation
	explainGroups   = 20
	explainGroupLen = 1000 // messages per group
	explainTime0    = 1_700_000_000_000
	explainAgent    = 100_000 // the owner of a long contact list
)

// explainLoad fills messages, conversations, queue, contacts, tokens,
// groups and their members, then ANALYZEs.
func explainLoad(t *testing.T, db *DB) {
	t.Helper()
	ctx := context.Background()
	stmts := []string{
		// Private conversations (a, a+k), explainMsgs messages each, the
		// two sides writing in turn.
		`INSERT INTO messages (conv_a, conv_b, seq, id, from_uid, to_uid, from_id, to_id, chat_type, msg_type, content, create_time, group_id, gid, queued)
		SELECT a, a + k, s, uuid_send(gen_random_uuid()),
			CASE WHEN s % 2 = 1 THEN a ELSE a + k END, CASE WHEN s % 2 = 1 THEN a + k ELSE a END,
			'u' || a, 'u' || (a + k), 2, 0, convert_to('message ' || s, 'UTF8'), {T0} + (a * 7919 + k * 104729) % 86400000 + s * 1000, '', 0, s % 3 = 0
		FROM generate_series(1, {U}) a, generate_series(1, {K}) k, generate_series(1, {M}) s`,
		// Group conversations (0, gid).
		`INSERT INTO messages (conv_a, conv_b, seq, id, from_uid, to_uid, from_id, to_id, chat_type, msg_type, content, create_time, group_id, gid, queued)
		SELECT 0, g, s, uuid_send(gen_random_uuid()), 1 + (g * 31 + s) % {U}, 0, 'u' || (1 + (g * 31 + s) % {U}), '', 1, 0,
			convert_to('group message ' || s, 'UTF8'), {T0} + s * 500, 'g' || g, g, false
		FROM generate_series(1, {G}) g, generate_series(1, {GL}) s`,
		`INSERT INTO conversations (conv_a, conv_b, last_seq, last_time)
		SELECT conv_a, conv_b, max(seq), max(create_time) FROM messages GROUP BY conv_a, conv_b`,
		// Each receiver has the last two messages of its conversations
		// queued, one of them pending; group members the last three.
		`INSERT INTO queue (uid, grp, peer, seq, pending, created)
		SELECT to_uid, false, from_uid, seq, seq = {M}, create_time FROM messages
		WHERE conv_a > 0 AND seq > {M} - 2`,
		`INSERT INTO chat_groups (gid, id, created, members, version)
		SELECT g, 'g' || g, {T0}, 100, 100 FROM generate_series(1, {G}) g`,
		`INSERT INTO group_members (gid, uid, joined)
		SELECT g, 1 + (g * 97 + i * 13) % {U}, {T0} FROM generate_series(1, {G}) g, generate_series(1, 100) i
		ON CONFLICT DO NOTHING`,
		`INSERT INTO queue (uid, grp, peer, seq, pending, created)
		SELECT m.uid, true, m.gid, s, false, {T0} FROM group_members m, generate_series({GL} - 2, {GL}) s`,
		// Both sides of every private conversation are contacts.
		`INSERT INTO contacts (owner, peer, unread, pending, last_contact, read_seq, last_message, last_seq)
		SELECT c.conv_a, c.conv_b, 1, true, c.last_time, c.last_seq - 1, c.last_time, c.last_seq FROM conversations c WHERE c.conv_a > 0
		UNION ALL
		SELECT c.conv_b, c.conv_a, 0, false, c.last_time, c.last_seq, c.last_time, c.last_seq FROM conversations c WHERE c.conv_a > 0`,
		// An agent every visitor has talked to or was assigned to: a
		// third of them have no message yet.
		`INSERT INTO contacts (owner, peer, unread, pending, waiting, last_contact, read_seq, last_message, last_seq)
		SELECT {AG}, v, v % 3, v % 2 = 0, v % 5 = 0, {T0} + v * 7919 % 86400000,
			CASE WHEN v % 3 = 0 THEN 0 ELSE 3 END, CASE WHEN v % 3 = 0 THEN 0 ELSE {T0} + v * 7919 % 86400000 - 1000 END,
			CASE WHEN v % 3 = 0 THEN 0 ELSE 4 END
		FROM generate_series(1, {U}) v`,
		`INSERT INTO contact_counts (owner, contacts, pending) SELECT owner, count(*), count(*) FILTER (WHERE pending) FROM contacts GROUP BY owner`,
		// Three tokens per user and terminal, some expired.
		`INSERT INTO tokens (token, uid, terminal, issued, expire)
		SELECT 'tok-' || u || '-' || term || '-' || i, u, term, {T0} + i, {T0} + (u % 10) * 86400000 + i
		FROM generate_series(1, {U}) u, unnest(ARRAY['pc', 'h5']) term, generate_series(1, 3) i`,
		`ANALYZE`,
	}
	shape := strings.NewReplacer("{T0}", fmt.Sprint(explainTime0), "{U}", fmt.Sprint(explainUsers), "{K}", fmt.Sprint(explainPeers),
		"{M}", fmt.Sprint(explainMsgs), "{G}", fmt.Sprint(explainGroups), "{GL}", fmt.Sprint(explainGroupLen), "{AG}", fmt.Sprint(explainAgent))
	for _, s := range stmts {
		if _, err := db.pool.Exec(ctx, shape.Replace(s)); err != nil {
			t.Fatalf("%v\n%s", err, shape.Replace(s))
		}
	}
	for table, least := range map[string]int{"messages": 10_000, "queue": 10_000, "contacts": 10_000, "tokens": 10_000} {
		var n int
		if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil || n < least {
			t.Fatalf("%s holds %d rows (%v), want at least %d", table, n, err, least)
		}
	}
}

// explainCase is one statement of the store and parameters a call of it
// would bind.
type explainCase struct {
	name string
	sql  string
	args []any
}

// inOrder names the cases whose rows must come in an index's order, not
// sorted, so that a page reads what it returns however long the list
// (PROTOCOL §7.4).
var inOrder = map[string]bool{
	"agent's chat list": true, "agent's chat list, next page": true,
	"agent's conversations": true, "agent's conversations before a time": true,
}

// bigTables are the tables that must never be scanned whole.
var bigTables = map[string]bool{"messages": true, "queue": true, "contacts": true, "tokens": true, "group_members": true}

func TestExplain(t *testing.T) {
	db, _ := openTest(t, nil)
	explainLoad(t, db)
	const t0 = int64(explainTime0)
	now := t0 + 5*86_400_000
	cases := []explainCase{
		// Login.
		{"token lookup", sqlTokenInfo, []any{"tok-17-pc-1"}},
		// Register and logout.
		{"token owner", sqlLockToken, []any{"tok-17-pc-1"}},
		{"token prune", sqlPruneTokens, []any{int64(17), "pc", "tok-17-pc-1", now, 3}},
		{"logout of a terminal", sqlRevokeTerminal, []any{int64(17), "pc"}},
		{"logout", sqlRevokeAll, []any{int64(17)}},
		{"token sweep", sqlSweepTokens, []any{now, 1000}},
		// Groups.
		{"members", sqlMembers, []any{int64(3), int64(-1)}},
		{"is member", sqlIsMember, []any{int64(3), int64(5)}},
		{"user groups", sqlUserGroups, []any{int64(5)}},
		{"leave's queue", sqlLeaveQueue, []any{int64(5), int64(3)}},
		// History (PROTOCOL §4.4): a time window's seq bounds, then the
		// page, oldest or newest first, an offset applied, private and
		// group conversations.
		{"history time bounds", sqlHistoryBounds, []any{int64(17), int64(19), t0 + 3000, t0 + 86_400_000}},
		{"history page ascending", sqlHistoryAsc, []any{int64(17), int64(19), int64(3), int64(8), int64(20), true, int64(1 << 20)}},
		{"history page descending", sqlHistoryDesc, []any{int64(17), int64(19), int64(2), int64(7), int64(20), true, int64(1 << 20)}},
		{"group history time bounds", sqlHistoryBounds, []any{int64(0), int64(3), t0 + 100_000, t0 + 200_000}},
		{"group history page ascending", sqlHistoryAsc, []any{int64(0), int64(3), int64(200), int64(400), int64(100), true, int64(1 << 20)}},
		{"group history page descending", sqlHistoryDesc, []any{int64(0), int64(3), int64(1), int64(900), int64(100), false, int64(4096)}},
		// The chat list (contacts by recency, PROTOCOL §4.6) and the
		// recent conversations (§7.4): a first page and a later one, of a
		// visitor's few contacts and of an agent's 2000, which must come
		// in index order.
		{"chat list", sqlContactsPage, []any{int64(17), int64(math.MaxInt64), int64(math.MaxInt64), 32}},
		{"chat list, next page", sqlContactsPage, []any{int64(17), t0 + 40_000_000, int64(20), 128}},
		{"agent's chat list", sqlContactsPage, []any{int64(explainAgent), int64(math.MaxInt64), int64(math.MaxInt64), 32}},
		{"agent's chat list, next page", sqlContactsPage, []any{int64(explainAgent), t0 + 40_000_000, int64(20), 128}},
		{"agent's conversations", sqlConversationsPage, []any{int64(explainAgent), int64(math.MaxInt64), int64(math.MaxInt64), 32}},
		{"agent's conversations before a time", sqlConversationsPage, []any{int64(explainAgent), t0 + 40_000_000, int64(0), 32}},
		{"recent count", sqlRecentCount, []any{int64(17), t0 + 40_000_000}},
		{"conversations", sqlConversationsPage, []any{int64(17), int64(math.MaxInt64), int64(math.MaxInt64), 32}},
		{"conversations before a time", sqlConversationsPage, []any{int64(17), t0 + 40_000_000, int64(0), 32}},
		// The offline pull (PROTOCOL §4.4): every private queue, one, the
		// groups', their conversations' last seqs, and the removal of what
		// a reply carried.
		{"offline pull", sqlQueuePrivate, []any{int64(18), int64(0), int64(math.MaxInt64), int64(100), true, int64(1 << 22)}},
		{"offline pull of one peer", sqlQueuePrivate, []any{int64(18), int64(17), int64(17), int64(100), true, int64(1 << 22)}},
		{"offline pull of groups", sqlQueueGroups, []any{int64(18), int64(0), int64(math.MaxInt64), int64(100), true, int64(1 << 22)}},
		{"offline last seqs", sqlLastSeqs, []any{int64(18), []int64{13, 14, 15, 16, 17}}},
		{"offline removal", sqlRemoveQueued, []any{int64(18), false, int64(17), []int64{9, 10}}},
		{"ack", sqlAck, []any{int64(18), false, int64(17), int64(10)}},
		{"group unread", sqlGroupUnread, []any{int64(3), int64(100), int64(1000), int64(18)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var plan []byte
			if err := db.pool.QueryRow(context.Background(), "EXPLAIN (FORMAT JSON) "+c.sql, c.args...).Scan(&plan); err != nil {
				t.Fatalf("EXPLAIN: %v\n%s", err, c.sql)
			}
			var root []map[string]any
			if err := json.Unmarshal(plan, &root); err != nil || len(root) != 1 {
				t.Fatalf("plan %s: %v", plan, err)
			}
			var scans []string
			sorted := false
			walkPlan(root[0]["Plan"], func(node map[string]any) {
				switch node["Node Type"] {
				case "Seq Scan":
					if rel, _ := node["Relation Name"].(string); bigTables[rel] {
						scans = append(scans, rel)
					}
				case "Sort", "Incremental Sort":
					sorted = true
				}
			})
			if len(scans) > 0 {
				t.Fatalf("sequential scan of %v in the plan of\n%s\nplan: %s", scans, c.sql, plan)
			}
			if inOrder[c.name] && sorted {
				t.Fatalf("the rows are sorted, not read in an index's order:\n%s\nplan: %s", c.sql, plan)
			}
		})
	}
}

// walkPlan calls fn with every node of an EXPLAIN (FORMAT JSON) plan.
func walkPlan(node any, fn func(map[string]any)) {
	m, ok := node.(map[string]any)
	if !ok {
		return
	}
	fn(m)
	if subs, ok := m["Plans"].([]any); ok {
		for _, s := range subs {
			walkPlan(s, fn)
		}
	}
}

// TestWalkPlanFindsSeqScan keeps TestExplain honest: a statement that must
// scan a table whole is reported.
func TestWalkPlanFindsSeqScan(t *testing.T) {
	db, _ := openTest(t, nil)
	var plan []byte
	if err := db.pool.QueryRow(context.Background(), `EXPLAIN (FORMAT JSON) SELECT token FROM tokens WHERE issued > $1`, 5).Scan(&plan); err != nil {
		t.Fatal(err)
	}
	var root []map[string]any
	if err := json.Unmarshal(plan, &root); err != nil {
		t.Fatal(err)
	}
	var seen []string
	walkPlan(root[0]["Plan"], func(node map[string]any) {
		seen = append(seen, fmt.Sprint(node["Node Type"], ":", node["Relation Name"]))
	})
	if !strings.Contains(strings.Join(seen, " "), "Seq Scan:tokens") {
		t.Fatalf("nodes %v: the seq scan of tokens was not found", seen)
	}
}
