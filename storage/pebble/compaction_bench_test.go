//go:build linux

package pebble

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// BenchmarkSteadyStateCompaction writes chat-shaped records into Pebble
// with the store's tuning (tunedOptions), paced (200 000 messages/s unless
// rate= says otherwise) in rounds of 10 s, and reports per round the
// process CPU per message (round0_cpu_us/msg, …), the bytes compactions
// wrote per message (round0_compacted_B/msg) and Pebble's estimated
// compaction debt at the round's end (round0_debt_MB), the log's own
// beside them where a layout has one. A layout whose compactions rewrite
// old history pays more each round, until the one compaction Pebble runs
// at a time never stops and the debt grows whatever the rate
// (BENCHMARKS.md, issue 15). Run it once, on an otherwise idle machine:
//
//	go test -run XXX -bench SteadyStateCompaction -benchtime 1x ./storage/pebble
//
// Layouts:
//   - "log", the store's for messages whose id it makes: the record in
//     the message log, a Pebble directory of its own, at L|lsn, and a
//     9-byte reference at h|conv|seq in the store. The log's batch commits
//     before the store's, as the committer does; the store has its 32 MiB
//     memtables (storeMemTableSize), the log and one-LSM layouts 8 MiB.
//   - "log-clientids", the store's for client-chosen ids: "log" and an
//     idempotency record at D|id|from.
//   - "log-onedb": "log-clientids" in one LSM, its tables split where a
//     keyspace ends (a span policy).
//   - "log-from": "log-clientids" with the idempotency record keyed from
//     first (d|from|id), as it was.
//   - "log-copy": "log-clientids" with each batch's records again in the
//     store under one key, what committing the two directories side by
//     side would need to repair a crash between them.
//   - "conv", the store's before the log: the 149-byte record at
//     h|conv|seq and the idempotency record at d|from|id.
//   - "history": "conv" without the idempotency record.
//   - "time": the record at m|id|from (its time-ordered id) and a 34-byte
//     reference at h|conv|seq, in one LSM.
//
// IMGATE_BENCH_PEBBLE="memtable=32,lbase=64,rounds=6,record=95,blob=64,
// newest=1,rate=100000,layouts=conv+log" changes the tuning (MiB), the
// rounds, the record's bytes (149: a 60-byte text between two short user
// ids), separates values of at least blob= bytes into blob files, uses
// Pebble's newest format (columnar blocks), sets the rate and picks the
// layouts.
func BenchmarkSteadyStateCompaction(b *testing.B) {
	memtable, lbase, rounds, record, rate, blob := 0, 0, 4, 149, 200_000, 0
	newest := false
	layouts := []string{"log", "log-clientids", "log-onedb", "log-from", "log-copy", "conv", "history", "time"}
	for _, kv := range strings.Split(os.Getenv("IMGATE_BENCH_PEBBLE"), ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, _ := strconv.Atoi(v)
		switch k {
		case "memtable":
			memtable = n
		case "lbase":
			lbase = n
		case "rounds":
			rounds = n
		case "record":
			record = max(n, 40)
		case "rate":
			rate = max(n, 1000)
		case "blob":
			blob = n
		case "newest":
			newest = n != 0
		case "layouts":
			layouts = strings.Split(v, "+")
		}
	}
	open := func(b *testing.B, cache *pebble.Cache, spans, store bool) *pebble.DB {
		po := tunedOptions(cache)
		if store {
			po.MemTableSize = storeMemTableSize // as Open: the store's, not the log's
		}
		if memtable > 0 {
			po.MemTableSize = uint64(memtable) << 20
		}
		if lbase > 0 {
			po.LBaseMaxBytes = int64(lbase) << 20
		}
		if blob > 0 {
			po.FormatMajorVersion = pebble.FormatValueSeparation
			po.Experimental.ValueSeparationPolicy = func() pebble.ValueSeparationPolicy {
				return pebble.ValueSeparationPolicy{Enabled: true, MinimumSize: blob, MaxBlobReferenceDepth: 10,
					RewriteMinimumAge: 5 * time.Minute, TargetGarbageRatio: 0.2}
			}
		}
		if newest {
			po.FormatMajorVersion = pebble.FormatNewest
		}
		if spans {
			po.Experimental.SpanPolicyFunc = keyspaceSpans
		}
		pdb, err := pebble.Open(b.TempDir(), po)
		if err != nil {
			b.Fatal(err)
		}
		return pdb
	}
	for _, layout := range layouts {
		b.Run(layout, func(b *testing.B) {
			cache := pebble.NewCache(blockCacheSize)
			defer cache.Unref()
			split := layout != "log-onedb" && strings.HasPrefix(layout, "log")
			pdbs := []*pebble.DB{open(b, cache, layout == "log-onedb", split)}
			if split {
				pdbs = append(pdbs, open(b, cache, false, false))
			}
			defer func() {
				for _, pdb := range pdbs {
					_ = pdb.Close()
				}
			}()
			for r, st := range compactionRounds(b, pdbs, layout, rounds, record, rate) {
				b.ReportMetric(st.cpu, fmt.Sprintf("round%d_cpu_us/msg", r))
				b.ReportMetric(st.compacted, fmt.Sprintf("round%d_compacted_B/msg", r))
				b.ReportMetric(st.debtMB, fmt.Sprintf("round%d_debt_MB", r))
				if len(pdbs) > 1 {
					b.ReportMetric(st.logCompacted, fmt.Sprintf("round%d_log_compacted_B/msg", r))
					b.ReportMetric(st.logDebtMB, fmt.Sprintf("round%d_log_debt_MB", r))
				}
			}
		})
	}
}

// keyspaceSpans ends a flush's or compaction's output table where a
// keyspace (its prefix byte) ends.
func keyspaceSpans(start []byte) (pebble.SpanPolicy, []byte, error) {
	if len(start) == 0 || start[0] == 0xff {
		return pebble.SpanPolicy{}, nil, nil
	}
	return pebble.SpanPolicy{}, []byte{start[0] + 1}, nil
}

// roundStats is one round of compactionRounds: process CPU per message in
// µs, bytes compactions wrote per message and Pebble's estimated
// compaction debt at the round's end, in all and of the log alone.
type roundStats struct{ cpu, compacted, debtMB, logCompacted, logDebtMB float64 }

// compactionRounds writes rounds of 10 s of messages of 200 conversations
// in synced batches of 500 at rate a second. With two DBs, the second is
// the log: its batch commits first.
func compactionRounds(b *testing.B, pdbs []*pebble.DB, layout string, rounds, record, rate int) []roundStats {
	const (
		batch = 500
		convs = 200
	)
	perRound := 10 * rate // 10 s a round
	rec := make([]byte, record)
	for i := range rec {
		rec[i] = byte(i * 7)
	}
	copy(rec[min(60, record-40):], "a typical customer-service question, about sixty bytes long.")
	ref := make([]byte, 34)
	seqs := make([]uint64, convs)
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	compacted := func(pdbs ...*pebble.DB) (n uint64) {
		for _, pdb := range pdbs {
			m := pdb.Metrics()
			for l := range m.Levels {
				n += m.Levels[l].TableBytesCompacted + m.Levels[l].BlobBytesCompacted
			}
		}
		return n
	}
	debt := func(pdbs ...*pebble.DB) (n uint64) {
		for _, pdb := range pdbs {
			n += pdb.Metrics().Compact.EstimatedDebt
		}
		return n
	}
	pdb, logs := pdbs[0], pdbs[1:]
	var lsn uint64
	var copied []byte
	var out []roundStats
	for r := 0; r < rounds; r++ {
		c0, b0, l0, start := cpu(), compacted(pdbs...), compacted(logs...), time.Now()
		for i := 0; i < perRound; {
			if due := time.Duration(i) * time.Second / time.Duration(rate); time.Since(start) < due {
				time.Sleep(due - time.Since(start))
			}
			bt := pdb.NewBatch()
			lt := bt
			if len(logs) > 0 {
				lt = logs[0].NewBatch()
			}
			for j := 0; j < batch; j, i = j+1, i+1 {
				p := i % convs
				seqs[p]++
				from := uint64(p + 1)
				var id [16]byte // time-ordered, as message ids are
				binary.BigEndian.PutUint64(id[:], uint64(time.Now().UnixNano()))
				binary.BigEndian.PutUint64(id[8:], uint64(r*perRound+i))
				hk := appendKeyHistory(nil, privateConv(from, from+1000), seqs[p])
				copy(rec[20:], id[:])
				switch layout {
				case "conv":
					_ = bt.Set(hk, rec, nil)
					_ = bt.Set(keyDedupV1(from, id), hk[2:], nil)
				case "history":
					_ = bt.Set(hk, rec, nil)
				case "time":
					_ = bt.Set(binary.BigEndian.AppendUint64(append([]byte("m|"), id[:]...), from), rec, nil)
					copy(ref[10:], id[:])
					_ = bt.Set(hk, ref, nil)
				default: // log…
					lsn++
					_ = lt.Set(keyLog(lsn), rec, nil)
					_ = bt.Set(hk, appendMessageRef(nil, lsn), nil)
					switch layout {
					case "log-from":
						_ = bt.Set(keyDedupV1(from, id), append(hk[2:], 0), nil)
					case "log-clientids", "log-onedb", "log-copy":
						_ = bt.Set(keyDedup(from, id), binary.BigEndian.AppendUint64(nil, lsn), nil)
					}
					if layout == "log-copy" {
						copied = append(copied, rec...)
					}
				}
			}
			if len(copied) > 0 {
				_ = bt.Set([]byte("z|"), copied, nil)
				copied = copied[:0]
			}
			if lt != bt {
				if err := lt.Commit(pebble.Sync); err != nil {
					b.Fatal(err)
				}
				_ = lt.Close()
			}
			if err := bt.Commit(pebble.Sync); err != nil {
				b.Fatal(err)
			}
			_ = bt.Close()
		}
		out = append(out, roundStats{
			cpu:          float64((cpu() - c0).Microseconds()) / float64(perRound),
			compacted:    float64(compacted(pdbs...)-b0) / float64(perRound),
			debtMB:       float64(debt(pdbs...)) / (1 << 20),
			logCompacted: float64(compacted(logs...)-l0) / float64(perRound),
			logDebtMB:    float64(debt(logs...)) / (1 << 20),
		})
	}
	return out
}
