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

// BenchmarkSteadyStateCompaction writes chat-shaped records into a Pebble
// directory with the store's tuning (tunedOptions), paced at 200 000
// messages/s in rounds of 2 M, and reports the process CPU each round
// took per message (round0_cpu_us/msg, …): the first rounds land in an
// empty LSM, the later ones pay the steady state's compactions. It is the
// storage side of issue 15's "second round" and "60 s" figures.
// (BENCHMARKS.md). Run it once, on an otherwise idle machine:
//
//	go test -run XXX -bench SteadyStateCompaction -benchtime 1x ./storage/pebble
//
// Layouts: "conv" is the store's (a 149-byte record at h|conv|seq and a
// d|from|id idempotency record per message); "time" keys the record by
// its time-ordered id (m|id|from) and keeps a 34-byte reference at
// h|conv|seq, the layout a time-ordered history would have.
// IMGATE_BENCH_PEBBLE="memtable=32,lbase=64,rounds=6" (MiB) changes the
// tuning and the rounds.
func BenchmarkSteadyStateCompaction(b *testing.B) {
	memtable, lbase, rounds := 0, 0, 4
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
		}
	}
	for _, layout := range []string{"conv", "time"} {
		b.Run(layout, func(b *testing.B) {
			cache := pebble.NewCache(blockCacheSize)
			defer cache.Unref()
			po := tunedOptions(cache)
			if memtable > 0 {
				po.MemTableSize = uint64(memtable) << 20
			}
			if lbase > 0 {
				po.LBaseMaxBytes = int64(lbase) << 20
			}
			pdb, err := pebble.Open(b.TempDir(), po)
			if err != nil {
				b.Fatal(err)
			}
			defer pdb.Close()
			for r, cpu := range compactionRounds(b, pdb, layout, rounds) {
				b.ReportMetric(cpu, fmt.Sprintf("round%d_cpu_us/msg", r))
			}
		})
	}
}

// compactionRounds writes rounds of 2 M messages of 200 conversations in
// synced batches of 500 at 200 000/s and returns each round's process CPU
// per message in µs.
func compactionRounds(b *testing.B, pdb *pebble.DB, layout string, rounds int) []float64 {
	const (
		perRound = 2_000_000
		rate     = 200_000
		batch    = 500
		convs    = 200
	)
	rec := make([]byte, 149)
	for i := range rec {
		rec[i] = byte(i * 7)
	}
	copy(rec[60:], "a typical customer-service question, about sixty bytes long.")
	ref := make([]byte, 34)
	seqs := make([]uint64, convs)
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	var out []float64
	for r := 0; r < rounds; r++ {
		c0, start := cpu(), time.Now()
		for i := 0; i < perRound; {
			if due := time.Duration(i) * time.Second / rate; time.Since(start) < due {
				time.Sleep(due - time.Since(start))
			}
			bt := pdb.NewBatch()
			for j := 0; j < batch; j, i = j+1, i+1 {
				p := i % convs
				seqs[p]++
				from := uint64(p + 1)
				var id [16]byte // time-ordered, as message ids are
				binary.BigEndian.PutUint64(id[:], uint64(time.Now().UnixNano()))
				binary.BigEndian.PutUint64(id[8:], uint64(r*perRound+i))
				hk := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64([]byte(prefixHistory), from), from+1000), seqs[p])
				copy(rec[20:], id[:])
				switch layout {
				case "conv":
					_ = bt.Set(hk, rec, nil)
					_ = bt.Set(append(binary.BigEndian.AppendUint64([]byte(prefixDedup), from), id[:]...), hk[2:], nil)
				case "time":
					_ = bt.Set(binary.BigEndian.AppendUint64(append([]byte("m|"), id[:]...), from), rec, nil)
					copy(ref[10:], id[:])
					_ = bt.Set(hk, ref, nil)
				}
			}
			if err := bt.Commit(pebble.Sync); err != nil {
				b.Fatal(err)
			}
			_ = bt.Close()
		}
		out = append(out, float64((cpu()-c0).Microseconds())/perRound)
	}
	return out
}
