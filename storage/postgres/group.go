package postgres

import (
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/imgate/imgate/storage"
)

// Groups (PROTOCOL §5). A group's protocol id maps to a gid drawn from
// chat_groups' identity at its first join; its members are rows of
// group_members, read by gid (the primary key) or by uid (group_members_user).
// chat_groups.members counts them and chat_groups.version moves with every
// join and leave, in the transaction that changes the members: a reader
// that sees a version sees the members of that version.
//
// Join and Leave run on the committer. Each locks the group's row (FOR
// UPDATE) before it reads the members, so joins and leaves of one group,
// from any node, run one at a time and the member cap holds; AppendGroup
// reads the version under FOR SHARE, so it sees either the members before a
// join or leave or those after it.
//
// MembershipVersion is the version this process last read or wrote, and
// the members are cached with the version they were read at: Members asks
// the server for the version and reads the members again only when it
// moved, whichever node moved it.

// SQL of the groups.
const (
	sqlGroupByID   = `SELECT gid FROM chat_groups WHERE id = $1`
	sqlLockGroupID = `SELECT gid, members, version FROM chat_groups WHERE id = $1 FOR UPDATE`
	sqlLockGroup   = `SELECT members, version FROM chat_groups WHERE gid = $1 FOR UPDATE`
	sqlCreateGroup = `INSERT INTO chat_groups (id, created) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING RETURNING gid`
	sqlIsMember    = `SELECT EXISTS (SELECT 1 FROM group_members WHERE gid = $1 AND uid = $2)`
	sqlAddMember   = `INSERT INTO group_members (gid, uid, joined) VALUES ($1, $2, $3)`
	sqlJoined      = `UPDATE chat_groups SET members = members + 1, version = version + 1 WHERE gid = $1 RETURNING version`
	sqlDelMember   = `DELETE FROM group_members WHERE gid = $1 AND uid = $2`
	sqlLeft        = `UPDATE chat_groups SET members = members - 1, version = version + 1 WHERE gid = $1 RETURNING version`
	// sqlLeaveQueue drops the group's queued messages of the member who
	// left ($1 uid, $2 gid), pending pushes included.
	sqlLeaveQueue = `DELETE FROM queue WHERE uid = $1 AND grp AND peer = $2`
	sqlLeaveRead  = `DELETE FROM group_reads WHERE uid = $1 AND gid = $2`
	// sqlMembers reads a group's version and, unless it is $2 (the
	// version of the cached list), its members in uid order, in one
	// snapshot. No row: no such group.
	sqlMembers = `SELECT version, CASE WHEN version = $2 THEN NULL
		ELSE ARRAY(SELECT uid FROM group_members m WHERE m.gid = g.gid ORDER BY uid) END
		FROM chat_groups g WHERE gid = $1`
	sqlUserGroups = `SELECT gid FROM group_members WHERE uid = $1 ORDER BY gid`
)

// GroupByID returns the gid of a group id, or ErrNotFound.
func (db *DB) GroupByID(id string) (uint64, error) {
	if gid, ok := db.groups.gid(id); ok {
		return gid, nil
	}
	if db.closed.Load() {
		return 0, storage.ErrClosed
	}
	ctx, cancel := readCtx()
	defer cancel()
	var gid int64
	if err := db.pool.QueryRow(ctx, sqlGroupByID, id).Scan(&gid); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return 0, storage.ErrNotFound
		}
		return 0, fmt.Errorf("postgres: group %s: %w", id, err)
	}
	db.groups.putGID(id, uint64(gid))
	return uint64(gid), nil
}

// Join adds uid to the group with protocol id groupID, creating the group
// on first join, unless it already has maxMembers members (JoinFull; a
// group that does not exist is not created then, and gid is 0). Joining
// twice succeeds and changes nothing. done runs on the committer.
func (db *DB) Join(groupID string, uid uint64, now int64, maxMembers int, done func(gid uint64, result int, err error)) error {
	var gid, ver uint64
	var result int
	var joined bool
	return db.submit(op{
		apply: func(b *batch) error {
			gid, ver, result, joined = 0, 0, storage.JoinOK, false
			var g, members, v int64
			err := b.tx.QueryRow(b.ctx, sqlLockGroupID, groupID).Scan(&g, &members, &v)
			if errors.Is(err, pgx.ErrNoRows) {
				if maxMembers <= 0 {
					result = storage.JoinFull
					return nil
				}
				err = b.tx.QueryRow(b.ctx, sqlCreateGroup, groupID, now).Scan(&g)
				if errors.Is(err, pgx.ErrNoRows) {
					// Another node created it since: lock the row it made.
					err = b.tx.QueryRow(b.ctx, sqlLockGroupID, groupID).Scan(&g, &members, &v)
				}
			}
			if err != nil {
				return err
			}
			gid, ver = uint64(g), uint64(v)
			if members > 0 {
				var member bool
				if err := b.tx.QueryRow(b.ctx, sqlIsMember, g, int64(uid)).Scan(&member); err != nil || member {
					return err
				}
			}
			if members >= int64(maxMembers) {
				result = storage.JoinFull
				return nil
			}
			if _, err := b.tx.Exec(b.ctx, sqlAddMember, g, int64(uid), now); err != nil {
				return err
			}
			if err := b.tx.QueryRow(b.ctx, sqlJoined, g).Scan(&v); err != nil {
				return err
			}
			ver, joined = uint64(v), true
			return nil
		},
		done: func(err error) {
			if err == nil && gid != 0 {
				db.groups.saw(gid, ver, joined)
			}
			done(gid, result, err)
		},
	})
}

// Leave removes uid from group gid and drops its queued messages and read
// cursor of the group; leaving a group one is not in changes nothing
// (left is false). done runs on the committer.
func (db *DB) Leave(gid, uid uint64, done func(left bool, err error)) error {
	var left, known bool
	var ver uint64
	return db.submit(op{
		apply: func(b *batch) error {
			left, known, ver = false, false, 0
			var members, v int64
			err := b.tx.QueryRow(b.ctx, sqlLockGroup, int64(gid)).Scan(&members, &v)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			if err != nil {
				return err
			}
			known, ver = true, uint64(v)
			ct, err := b.tx.Exec(b.ctx, sqlDelMember, int64(gid), int64(uid))
			if err != nil || ct.RowsAffected() == 0 {
				return err
			}
			q := &pgx.Batch{}
			q.Queue(sqlLeft, int64(gid)).QueryRow(func(row pgx.Row) error { return row.Scan(&v) })
			q.Queue(sqlLeaveQueue, int64(uid), int64(gid))
			q.Queue(sqlLeaveRead, int64(uid), int64(gid))
			if err := b.tx.SendBatch(b.ctx, q).Close(); err != nil {
				return err
			}
			left, ver = true, uint64(v)
			return nil
		},
		done: func(err error) {
			if err == nil && known {
				db.groups.saw(gid, ver, left)
			}
			done(left && err == nil, err)
		},
	})
}

// IsMember reports whether uid is a member of gid.
func (db *DB) IsMember(gid, uid uint64) (bool, error) {
	if db.closed.Load() {
		return false, storage.ErrClosed
	}
	ctx, cancel := readCtx()
	defer cancel()
	var member bool
	if err := db.pool.QueryRow(ctx, sqlIsMember, int64(gid), int64(uid)).Scan(&member); err != nil {
		return false, fmt.Errorf("postgres: member %d of %d: %w", uid, gid, err)
	}
	return member, nil
}

// Members returns the uids of gid's members in uid order (none for a
// group that does not exist). The slice is shared: callers must not
// modify it. It costs one round trip: the members are read again only when
// the group's version moved since they were cached.
func (db *DB) Members(gid uint64) ([]uint64, error) {
	if db.closed.Load() {
		return nil, storage.ErrClosed
	}
	cached, cver, ok := db.groups.memberList(gid)
	have := int64(-1) // no version: read the members
	if ok {
		have = int64(cver)
	}
	ctx, cancel := readCtx()
	defer cancel()
	var v int64
	var uids []int64
	err := db.pool.QueryRow(ctx, sqlMembers, int64(gid), have).Scan(&v, &uids)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("postgres: members of %d: %w", gid, err)
	case v == have:
		db.groups.saw(gid, cver, false)
		return cached, nil
	}
	m := make([]uint64, len(uids))
	for i, u := range uids {
		m[i] = uint64(u)
	}
	if len(m) == 0 {
		m = nil
	}
	db.groups.fill(gid, m, uint64(v))
	return m, nil
}

// UserGroups returns the gids of uid's groups in gid order.
func (db *DB) UserGroups(uid uint64) ([]uint64, error) {
	if db.closed.Load() {
		return nil, storage.ErrClosed
	}
	ctx, cancel := readCtx()
	defer cancel()
	rows, err := db.pool.Query(ctx, sqlUserGroups, int64(uid))
	if err != nil {
		return nil, fmt.Errorf("postgres: groups of %d: %w", uid, err)
	}
	var out []uint64
	var gid int64
	if _, err := pgx.ForEachRow(rows, []any{&gid}, func() error {
		out = append(out, uint64(gid))
		return nil
	}); err != nil {
		return nil, fmt.Errorf("postgres: groups of %d: %w", uid, err)
	}
	return out, nil
}

// MembershipVersion is gid's chat_groups.version as this process last read
// (Members) or wrote it (Join, Leave); 0 when it has not. AppendGroup
// compares it with the version in its transaction: a version read before
// the members were (as the router does) is never newer than the members,
// so when it is still the group's the members are too.
func (db *DB) MembershipVersion(gid uint64) uint64 { return db.groups.version(gid) }

// maxCachedMembers bounds the member uids the cache holds (8 B each), and
// maxCachedGroups its group ids and versions; past them it starts afresh.
const (
	maxCachedMembers = 1 << 20
	maxCachedGroups  = 1 << 17
)

// groupCache holds gids by protocol id (a gid never changes), the versions
// this process saw, and member lists with the version they were read at.
type groupCache struct {
	mu      sync.Mutex
	ids     map[string]uint64
	vers    map[uint64]uint64
	members map[uint64]memberList
	held    int // uids in members
}

// memberList is a group's members at version ver; uids is read-only.
type memberList struct {
	ver  uint64
	uids []uint64
}

func (c *groupCache) gid(id string) (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	gid, ok := c.ids[id]
	return gid, ok
}

func (c *groupCache) putGID(id string, gid uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ids == nil || len(c.ids) >= maxCachedGroups {
		c.ids = make(map[string]uint64)
	}
	c.ids[id] = gid
}

func (c *groupCache) version(gid uint64) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.vers[gid]
}

// memberList returns the cached members of gid and their version.
func (c *groupCache) memberList(gid uint64) ([]uint64, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.members[gid]
	return l.uids, l.ver, ok
}

// saw records that gid was at version ver when read or committed; changed
// says that this process changed its members, so the cached list is
// dropped. Versions only grow: an older one seen late is ignored. c.mu is
// held.
func (c *groupCache) sawLocked(gid, ver uint64, changed bool) {
	if c.vers == nil || len(c.vers) >= maxCachedGroups {
		c.vers = make(map[uint64]uint64)
	}
	if ver > c.vers[gid] {
		c.vers[gid] = ver
	}
	if l, ok := c.members[gid]; changed && ok && l.ver < ver {
		c.held -= len(l.uids)
		delete(c.members, gid)
	}
}

func (c *groupCache) saw(gid, ver uint64, changed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sawLocked(gid, ver, changed)
}

// fill caches the members of gid read at version ver, unless a newer list
// is cached.
func (c *groupCache) fill(gid uint64, uids []uint64, ver uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sawLocked(gid, ver, false)
	if l, ok := c.members[gid]; ok {
		if l.ver >= ver {
			return
		}
		c.held -= len(l.uids)
	}
	if c.members == nil || c.held+len(uids) > maxCachedMembers {
		c.members, c.held = make(map[uint64]memberList), 0
	}
	c.members[gid] = memberList{ver, uids}
	c.held += len(uids)
}
