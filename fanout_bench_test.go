package main

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// benchMembers is the group size of BenchmarkGroupFanOut.
var benchMembers = 2000

// BenchmarkGroupFanOut: one sender, a group of 2000 live members over
// loopback WebSockets (PROTOCOL §5). Each op is one durable group message
// delivered to every member; deliveries/s counts pushes received.
//
//	go test -run XXX -bench GroupFanOut -benchtime 50x .
func BenchmarkGroupFanOut(b *testing.B) {
	members := benchMembers
	ts := newTestServer(b, func(c *config) {
		// Set-up takes a while and members only read once it is done.
		c.RateLimit, c.IdleTimeout, c.PingInterval = -1, time.Hour, 30*time.Minute
		c.MaxGroup = members + 1 // the members and the sender
	})
	conns := make([]*websocket.Conn, members)
	// Join 32 at a time: registrations and joins are synced commits, and
	// concurrent ones share their fsyncs.
	var setup sync.WaitGroup
	next := make(chan int)
	for w := 0; w < 32; w++ {
		setup.Add(1)
		go func() {
			defer setup.Done()
			for i := range next {
				c := ts.login(ts.register(fmt.Sprintf("m%d", i), 0))
				c.send(`{"cmd":7,"groupId":"big"}`)
				for { // others' join notices may come first
					got := c.read()
					if strings.HasPrefix(got, `{"code":10011`) {
						break
					}
					if !strings.HasPrefix(got, `{"command":9,`) {
						b.Errorf("join %d: %s", i, got)
						break
					}
				}
				conns[i] = c.c
			}
		}()
	}
	for i := range conns {
		next <- i
	}
	close(next)
	setup.Wait()
	if b.Failed() {
		return
	}
	sender := ts.login(ts.register("sender", 1))
	// Readers first drain the join notices, up to the sender's, then count
	// pushes; the clock starts once every backlog is gone.
	var drained, wg sync.WaitGroup
	var mu sync.Mutex
	counts := make([]int, members)
	for i, c := range conns {
		drained.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			inBacklog := true
			for {
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Minute))
				_, p, err := c.ReadMessage()
				if err != nil {
					if inBacklog {
						drained.Done()
					}
					return
				}
				if inBacklog {
					if strings.Contains(string(p), `"id":"sender"`) {
						inBacklog = false
						drained.Done()
					}
					continue
				}
				if strings.HasPrefix(string(p), `{"command":11,`) {
					mu.Lock()
					counts[i]++
					done := counts[i] == b.N
					mu.Unlock()
					if done {
						return
					}
				}
			}
		}()
	}
	sender.send(`{"cmd":7,"groupId":"big"}`)
	if got := sender.read(); !strings.HasPrefix(got, `{"code":10011`) {
		b.Fatalf("sender join: %s", got)
	}
	go func() {
		for {
			_, p, err := sender.c.ReadMessage()
			if err != nil {
				return
			}
			if !strings.HasPrefix(string(p), `{"code":10000,`) && !strings.HasPrefix(string(p), `{"command":`) {
				b.Errorf("sender got %s", p)
			}
		}
	}()
	drained.Wait()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if err := sender.c.WriteMessage(websocket.TextMessage, []byte(`{"cmd":11,"chatType":1,"groupId":"big","content":"hello everyone"}`)); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	total := 0
	for _, n := range counts {
		total += n
	}
	if total != b.N*members {
		b.Fatalf("%d deliveries of %d", total, b.N*members)
	}
	b.ReportMetric(float64(total)/el.Seconds(), "deliveries/s")
	sender.c.Close()
}
