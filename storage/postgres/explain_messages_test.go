package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
)

// TestExplainMessages is TestExplain (explain_test.go, which has the pages:
// history, chat list, conversations, offline pulls) for the other
// statements of messages, contacts, reads and recall: on the same loaded
// database, with the parameters a call binds, none scans a big table (nor
// conversations, totals, partners, group reads) sequentially.
func TestExplainMessages(t *testing.T) {
	db, _ := openTest(t, nil)
	explainLoad(t, db)
	ctx := context.Background()
	// explainLoad leaves partners and group reads empty: fill them.
	for _, sql := range []string{
		`INSERT INTO partners (visitor, partner) SELECT u, u + 1 FROM generate_series(1, 2000) u`,
		`INSERT INTO group_reads (uid, gid, read_seq) SELECT uid, gid, 990 FROM group_members`,
		`ANALYZE partners, group_reads`,
	} {
		if _, err := db.pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	id := make([]byte, 16)
	if err := db.pool.QueryRow(ctx, `SELECT id FROM messages WHERE conv_a = 17 AND conv_b = 19 AND seq = 3`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	const u, p = int64(17), int64(19) // a private conversation of explainLoad
	const gid = int64(3)
	t0 := int64(explainTime0)
	cases := []explainCase{
		// Appends.
		{"append private", sqlAppendPrivate, []any{u, p, u, p, id, true, "u17", "u19", int16(2), int32(0), []byte("x"), nil, t0, true, t0, u, p}},
		{"append private, visitor", sqlAppendPrivate, []any{u, p, u, p, id, false, "u17", "u19", int16(2), int32(0), []byte("x"), nil, t0, false, t0, p, u}},
		{"append group", sqlAppendGroup, []any{int64(0), gid, u, id, true, "u17", "", int16(1), int32(0), []byte("x"), nil, t0, "g3", t0, []int64{1, 2}, []int64{3}, true, int64(100)}},
		{"stored message", sqlStored, []any{u, id}},
		{"group members", sqlGroupMembers, []any{gid}},
		{"last seq", sqlLastSeq, []any{u, p}},
		// Contacts.
		{"lock pair", sqlLockPair, []any{u, p, p, u}},
		{"contact", sqlContact, []any{u, p}},
		{"counts", sqlCounts, []any{u}},
		{"partner", sqlPartner, []any{u}},
		{"mark read", sqlMarkRead, []any{u, p}},
		// Reads.
		{"lock reads", sqlLockReads, []any{u, []int64{p, 18}}},
		{"read to", sqlReadTo, []any{u, p, u, p, int64(3), int64(10), int64(5)}},
		{"group read", sqlGroupReadLocked, []any{u, gid, int64(500)}},
		// Recall.
		{"recall lock", sqlRecallLock, []any{u, id, t0}},
		{"recall counts", sqlRecallCounts, []any{u, p, int64(3), u, int64(4), true}},
		{"recall group queues", sqlRecallGroupQueued, []any{gid, int64(999)}},
	}
	big := map[string]bool{"conversations": true, "contact_counts": true, "partners": true, "group_reads": true}
	for k := range bigTables {
		big[k] = true
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var plan []byte
			if err := db.pool.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+c.sql, c.args...).Scan(&plan); err != nil {
				t.Fatalf("EXPLAIN: %v\n%s", err, c.sql)
			}
			var root []map[string]any
			if err := json.Unmarshal(plan, &root); err != nil || len(root) != 1 {
				t.Fatalf("plan %s: %v", plan, err)
			}
			var scans []string
			walkPlan(root[0]["Plan"], func(node map[string]any) {
				if node["Node Type"] == "Seq Scan" {
					if rel, _ := node["Relation Name"].(string); big[rel] {
						scans = append(scans, rel)
					}
				}
			})
			if len(scans) > 0 {
				t.Fatalf("sequential scan of %v in the plan of\n%s\nplan: %s", scans, c.sql, plan)
			}
		})
	}
}

// TestPagesReadWhatTheyReturn runs the pages a client asks for against the
// heaviest shapes (an agent with 20 000 contacts and conversations, a
// queue of 20 000 messages, a conversation of 20 000 messages at equal
// times) with EXPLAIN ANALYZE, and asserts that no scan of a big table
// returns many more rows than the page holds: the page is bounded by an
// index, whatever the plan.
func TestPagesReadWhatTheyReturn(t *testing.T) {
	db, _ := openTest(t, nil)
	explainLoad(t, db)
	ctx := context.Background()
	const h, peer = int64(900_001), int64(900_002) // the heavy owner, and its heavy conversation
	const n = 20_000
	t0 := int64(explainTime0)
	for _, sql := range []string{
		`INSERT INTO contacts (owner, peer, unread, pending, last_contact, read_seq, last_message, last_seq)
		SELECT 900001, 1000000 + i, 1, true, {T0} + i * 10, 0, {T0} + i * 10, 1 FROM generate_series(1, 20000) i`,
		`INSERT INTO messages (conv_a, conv_b, seq, id, from_uid, to_uid, from_id, to_id, chat_type, msg_type, content, create_time, group_id, gid, queued)
		SELECT 900001, 900002, s, uuid_send(gen_random_uuid()), 900002, 900001, 'u900002', 'u900001', 2, 0, convert_to(repeat('x', 100), 'UTF8'),
			{T0} + (s / 1000) * 1000, '', 0, true
		FROM generate_series(1, 20000) s`,
		`INSERT INTO conversations (conv_a, conv_b, last_seq, last_time) VALUES (900001, 900002, 20000, {T0} + 20000)`,
		`INSERT INTO queue (uid, grp, peer, seq, pending, created) SELECT 900001, false, 900002, s, s % 100 = 0, {T0} FROM generate_series(1, 20000) s`,
		`ANALYZE`,
	} {
		if _, err := db.pool.Exec(ctx, strings.ReplaceAll(sql, "{T0}", fmt.Sprint(t0))); err != nil {
			t.Fatalf("%v\n%s", err, sql)
		}
	}
	inf := int64(math.MaxInt64)
	cases := []struct {
		explainCase
		bound float64 // rows any one scan may return
	}{
		{explainCase{"chat list page", sqlContactsPage, []any{h, inf, inf, int64(32)}}, 40},
		{explainCase{"chat list, a later page", sqlContactsPage, []any{h, t0 + 100_000, int64(1_010_000), int64(128)}}, 140},
		{explainCase{"conversations page", sqlConversationsPage, []any{h, t0 + 50_000, int64(0), int64(32)}}, 40},
		{explainCase{"history, oldest", sqlHistoryAsc, []any{h, peer, int64(5001), inf, int64(50), true, inf}}, 60},
		{explainCase{"history, newest", sqlHistoryDesc, []any{h, peer, int64(1), int64(19_990), int64(50), true, int64(1000)}}, 60},
		{explainCase{"history time bounds", sqlHistoryBounds, []any{h, peer, t0 + 7000, t0 + 9000}}, 5},
		{explainCase{"the heavy queue", sqlQueuePrivate, []any{h, int64(0), inf, int64(100), true, int64(1 << 20)}}, 120},
		{explainCase{"the heavy queue, one peer", sqlQueuePrivate, []any{h, peer, peer, int64(100), true, inf}}, 120},
		{explainCase{"read to, few left unread", sqlReadTo, []any{h, peer, h, peer, int64(19_000), int64(20_000), int64(10)}}, 20},
		{explainCase{"last seq", sqlLastSeq, []any{h, peer}}, 2},
	}
	big := map[string]bool{"conversations": true}
	for k := range bigTables {
		big[k] = true
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tx, err := db.pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx) // ANALYZE runs writes too
			var plan []byte
			if err := tx.QueryRow(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) "+c.sql, c.args...).Scan(&plan); err != nil {
				t.Fatalf("EXPLAIN: %v\n%s", err, c.sql)
			}
			var root []map[string]any
			if err := json.Unmarshal(plan, &root); err != nil || len(root) != 1 {
				t.Fatalf("plan %s: %v", plan, err)
			}
			walkPlan(root[0]["Plan"], func(node map[string]any) {
				rel, _ := node["Relation Name"].(string)
				rows, _ := node["Actual Rows"].(float64)
				loops, _ := node["Actual Loops"].(float64)
				removed, _ := node["Rows Removed by Filter"].(float64)
				if big[rel] && (rows+removed)*max(loops, 1) > c.bound {
					t.Fatalf("%s on %s reads %.0f rows (%.0f loops, %.0f filtered), more than %.0f:\n%s\nplan: %s",
						node["Node Type"], rel, rows*loops, loops, removed, c.bound, c.sql, plan)
				}
			})
		})
	}
}
