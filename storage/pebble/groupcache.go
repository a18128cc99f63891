package pebble

import "sync"

// Every group message reads its group's gid and member list, so both are
// cached. A gid never changes once assigned. A member list is dropped by
// every Join and Leave of its group after the commit, before the caller
// hears of it, and reloaded from disk on the next read.

// maxCachedMembers bounds the member uids held (8 B each); past it the
// cache starts afresh.
const maxCachedMembers = 1 << 20

type groupCache struct {
	mu      sync.RWMutex
	gen     uint64 // bumped by every invalidation
	ids     map[string]uint64
	members map[uint64][]uint64 // read-only slices
	held    int                 // uids in members
}

func (c *groupCache) gid(id string) (uint64, bool) {
	c.mu.RLock()
	gid, ok := c.ids[id]
	c.mu.RUnlock()
	return gid, ok
}

func (c *groupCache) putGID(id string, gid uint64) {
	c.mu.Lock()
	if c.ids == nil || len(c.ids) >= maxCachedMembers/8 {
		c.ids = make(map[string]uint64)
	}
	c.ids[id] = gid
	c.mu.Unlock()
}

// memberList returns the cached members of gid and the generation to fill
// with on a miss.
func (c *groupCache) memberList(gid uint64) ([]uint64, uint64, bool) {
	c.mu.RLock()
	m, ok := c.members[gid]
	gen := c.gen
	c.mu.RUnlock()
	return m, gen, ok
}

// fill caches members read from disk, unless a Join or Leave committed
// since gen was read: the read may predate it.
func (c *groupCache) fill(gid uint64, members []uint64, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if c.members == nil || c.held+len(members) > maxCachedMembers {
		c.members, c.held = make(map[uint64][]uint64), 0
	}
	c.members[gid] = members
	c.held += len(members)
}

// invalidate drops gid's member list after a committed Join or Leave.
func (c *groupCache) invalidate(gid uint64) {
	c.mu.Lock()
	c.gen++
	if m, ok := c.members[gid]; ok {
		c.held -= len(m)
		delete(c.members, gid)
	}
	c.mu.Unlock()
}
