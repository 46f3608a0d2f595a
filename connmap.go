package drainhttp

import (
	"hash/maphash"
	"net"
	"sync"
	"unsafe"
)

// connMap maps the net.Conns that net/http's hooks pass to their records.
// It is sharded, so that the ConnState lookups of many cores do not meet on
// one lock, and made of plain maps, which cost about 30 bytes an entry
// where a sync.Map costs about 100.
type connMap struct {
	seed   maphash.Seed
	shards [connMapShards]struct {
		mu sync.RWMutex
		m  map[net.Conn]*conn
		_  [shardPad]byte // a shard a cache line
	}
}

// shardPad fills a shard up to a 64-byte cache line.
const shardPad = 64 - (unsafe.Sizeof(sync.RWMutex{})+unsafe.Sizeof(map[net.Conn]*conn(nil)))%64

// connMapShards is the number of shards: plenty for the cores of one
// machine.
const connMapShards = 32

func newConnMap() *connMap {
	m := &connMap{seed: maphash.MakeSeed()}
	for i := range m.shards {
		m.shards[i].m = make(map[net.Conn]*conn)
	}
	return m
}

func (m *connMap) shard(nc net.Conn) int {
	return int(maphash.Comparable(m.seed, nc) % connMapShards)
}

func (m *connMap) load(nc net.Conn) *conn {
	s := &m.shards[m.shard(nc)]
	s.mu.RLock()
	c := s.m[nc]
	s.mu.RUnlock()
	return c
}

func (m *connMap) store(nc net.Conn, c *conn) {
	s := &m.shards[m.shard(nc)]
	s.mu.Lock()
	s.m[nc] = c
	s.mu.Unlock()
}

func (m *connMap) delete(nc net.Conn) {
	s := &m.shards[m.shard(nc)]
	s.mu.Lock()
	delete(s.m, nc)
	s.mu.Unlock()
}

// records returns every record once (an alias key maps to a record under
// its accepted conn too).
func (m *connMap) records() []*conn {
	var conns []*conn
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.RLock()
		for nc, c := range s.m {
			if nc == c.nc {
				conns = append(conns, c)
			}
		}
		s.mu.RUnlock()
	}
	return conns
}
