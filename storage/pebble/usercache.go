package pebble

import (
	"hash/maphash"
	"sync"
)

// Every chat message names its receiver by protocol id and every page
// renders profiles, so user lookups are the hottest reads: the cache keeps
// them off Pebble. Profiles change only through Register, which replaces
// the cached copy after its commit; an id maps to one uid forever.

const (
	userCacheShards = 64
	// userCacheShardMax bounds each shard (about 200 B per user); a full
	// shard starts afresh and reloads on demand.
	userCacheShardMax = 4096
)

type userCache struct {
	seed   maphash.Seed
	shards [userCacheShards]userShard
}

type userShard struct {
	mu    sync.RWMutex
	gen   uint64 // bumped by every Register of a user in this shard
	users map[uint64]User
	ids   map[string]uint64
}

func (c *userCache) userShard(uid uint64) *userShard { return &c.shards[uid%userCacheShards] }

func (c *userCache) idShard(id string) *userShard {
	return &c.shards[maphash.String(c.seed, id)%userCacheShards]
}

func (c *userCache) user(uid uint64) (User, uint64, bool) {
	s := c.userShard(uid)
	s.mu.RLock()
	u, ok := s.users[uid]
	gen := s.gen
	s.mu.RUnlock()
	return u, gen, ok
}

// fill caches u as read from disk, unless a Register changed the shard
// since gen was read: the disk read may then predate that commit.
func (c *userCache) fill(u User, gen uint64) {
	s := c.userShard(u.UID)
	s.mu.Lock()
	if s.gen == gen {
		s.putLocked(u)
	}
	s.mu.Unlock()
}

// put caches u after its commit.
func (c *userCache) put(u User) {
	s := c.userShard(u.UID)
	s.mu.Lock()
	s.gen++
	s.putLocked(u)
	s.mu.Unlock()
}

func (s *userShard) putLocked(u User) {
	if s.users == nil || len(s.users) >= userCacheShardMax {
		s.users = make(map[uint64]User)
	}
	s.users[u.UID] = u
}

func (c *userCache) uid(id string) (uint64, bool) {
	s := c.idShard(id)
	s.mu.RLock()
	uid, ok := s.ids[id]
	s.mu.RUnlock()
	return uid, ok
}

func (c *userCache) putID(id string, uid uint64) {
	s := c.idShard(id)
	s.mu.Lock()
	if s.ids == nil || len(s.ids) >= userCacheShardMax {
		s.ids = make(map[string]uint64)
	}
	s.ids[id] = uid
	s.mu.Unlock()
}
