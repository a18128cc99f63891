package storagetest

import "github.com/imgate/imgate/storage"

// PROTOCOL §4.2, §4.3: a message acked as pushed (10000) waits for its
// push's outcome: written, it is not queued; not written, it is queued at
// once, while others are still pending; a second outcome does nothing; a
// restart before any outcome queues it. Everything settled before a
// restart stays as it was after it.
func testOnlineDeliverySettled(f *fixture) {
	t := f.t
	var rs []storage.AppendResult
	for _, c := range []string{"written", "dropped", "restarted"} {
		rs = append(rs, f.sendOnline(priv(1, 2, c)))
	}
	if got := f.queued(2, 1); len(got) != 0 {
		t.Fatalf("queued before any outcome: %v", got)
	}
	rs[0].Delivery.Settle(true)
	rs[1].Delivery.Settle(false)
	if got := str(f.queued(2, 1)); got != "[2]" {
		t.Fatalf("after one written and one dropped: %s, want only the dropped one", got)
	}
	rs[0].Delivery.Settle(false)
	rs[1].Delivery.Settle(false)
	rs[1].Delivery.Settle(true)
	if got := str(f.queued(2, 1)); got != "[2]" {
		t.Fatalf("after second outcomes: %s, want [2]", got)
	}
	if c := f.contact(2, 1); c.Unread != 3 {
		t.Fatalf("unread %d, want 3: pushed or queued, all are unread", c.Unread)
	}
	// The third's push never settles: the restart queues it. The written
	// one may come back as well (a duplicate, which PROTOCOL §4.2 allows
	// of a push written just before a crash); nothing comes twice.
	f.reopen()
	got := f.queued(2, 1)
	if str(got) != "[2 3]" && str(got) != "[1 2 3]" {
		t.Fatalf("after a restart with the third unsettled: %v, want [2 3]", got)
	}
	f.take(2, 1)

	// Settled with a loss before a restart: only the lost one is queued,
	// and the restart adds nothing.
	w := f.sendOnline(priv(1, 2, "written"))
	d := f.sendOnline(priv(1, 2, "dropped"))
	w.Delivery.Settle(true)
	d.Delivery.Settle(false)
	want := str([]uint64{d.Msg.Seq})
	if got := str(f.queued(2, 1)); got != want {
		t.Fatalf("after settling: %s, want %s", got, want)
	}
	f.reopen()
	if got := str(f.queued(2, 1)); got != want {
		t.Fatalf("after settling and a restart: %s, want %s", got, want)
	}
}

// PROTOCOL §4.2: a push that stays unsettled (a connection holds it
// unsent) is queued once the expiry passed on the store's clock, and not
// before, so no receiver waits on a slow connection; private and group
// alike; a late outcome changes nothing; the expired pushes do not come
// back at a restart.
func testUnsettledDeliveryExpires(f *fixture) {
	t := f.t
	f.sendOnline(priv(1, 2, "written in time")).Delivery.Settle(true)
	r1 := f.sendOnline(priv(1, 2, "late, then written"))
	r2 := f.sendOnline(priv(1, 2, "late, then lost"))
	gid := f.mustJoin("g", 1)
	f.mustJoin("g", 2)
	rg := f.appendGroup(grp(1, gid, "g", "late"), []uint64{2}, nil, storage.AppendOptions{})
	f.clock.Advance(expiry / 2)
	if got, gq := f.queued(2, 1), f.groupQueued(2, gid); len(got) != 0 || len(gq) != 0 {
		t.Fatalf("queued before the expiry: %v, group %v", got, gq)
	}
	f.clock.Advance(expiry)
	f.eventually("the unsettled pushes queued after the expiry", waitTimeout, f.barrier, func() bool {
		return len(f.queuedNow(2, 1)) >= 2 && len(f.groupQueuedNow(2, gid)) >= 1
	})
	if got, gq := str(f.queuedNow(2, 1)), str(f.groupQueuedNow(2, gid)); got != "[2 3]" || gq != "[1]" {
		t.Fatalf("after the expiry: %s, group %s; want [2 3], [1]", got, gq)
	}
	r1.Delivery.Settle(true) // the slow connection wrote it after all
	r2.Delivery.Settle(false)
	rg.Delivery.Member(0).Settle(false)
	if got, gq := str(f.queued(2, 1)), str(f.groupQueued(2, gid)); got != "[2 3]" || gq != "[1]" {
		t.Fatalf("after late outcomes: %s, group %s; want [2 3], [1]", got, gq)
	}
	f.take(2, 1)
	f.remove(2, []storage.Removal{{Peer: gid, Group: true, Seqs: []uint64{1}, ReadTo: 1}})
	f.reopen()
	if got, gq := f.queued(2, 1), f.groupQueued(2, gid); len(got) != 0 || len(gq) != 0 {
		t.Fatalf("expired pushes came back at the restart: %v, group %v", got, gq)
	}
}

// PROTOCOL §4.2 (README: a push late past 2 s is queued): on a store with
// nothing else to do, an unsettled push is queued by the expiry alone,
// with no later operation on the store.
func testExpiryOnAQuietStore(f *fixture) {
	t := f.t
	f.sendOnline(priv(1, 2, "never settled"))
	f.clock.Advance(expiry + expiry/2)
	f.eventually("queued on a quiet store", waitTimeout, nil, func() bool { return len(f.queuedNow(2, 1)) > 0 })
	if got := str(f.queuedNow(2, 1)); got != "[1]" {
		t.Fatalf("queued %s, want [1]", got)
	}
}
