package pubsub

import (
	"context"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// slotCount is the number of hash slots of a Redis Cluster.
const slotCount = 16384

// keySlot returns the hash slot of a key (or of a sharded pub/sub
// channel), as Redis Cluster computes it: CRC16 (XMODEM) of the key's hash
// tag, the part between the first '{' and the next '}' if that is not
// empty, else of the whole key, modulo 16384.
func keySlot(key string) int {
	if open := strings.IndexByte(key, '{'); open >= 0 {
		if n := strings.IndexByte(key[open+1:], '}'); n > 0 {
			key = key[open+1 : open+1+n]
		}
	}
	return int(crc16(key) % slotCount)
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0), the
// checksum of Redis Cluster's key distribution.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// slotTable says which primary serves each hash slot ("" for a slot that
// no primary serves). It is never modified once built.
type slotTable struct {
	owner     [slotCount]string
	primaries []string // every address that serves a slot, sorted by first slot
}

// readSlots reads the cluster's slot table from any of its nodes.
func readSlots(ctx context.Context, c *redis.ClusterClient) (*slotTable, error) {
	ranges, err := c.ClusterSlots(ctx).Result()
	if err != nil {
		return nil, err
	}
	t := &slotTable{}
	seen := make(map[string]bool)
	for _, r := range ranges {
		if len(r.Nodes) == 0 || r.Start < 0 || r.End >= slotCount || r.Start > r.End {
			continue
		}
		addr := r.Nodes[0].Addr // the primary comes first
		for s := r.Start; s <= r.End; s++ {
			t.owner[s] = addr
		}
	}
	for _, addr := range t.owner {
		if addr != "" && !seen[addr] {
			seen[addr] = true
			t.primaries = append(t.primaries, addr)
		}
	}
	return t, nil
}

// same reports whether t and u assign every slot alike.
func (t *slotTable) same(u *slotTable) bool {
	return u != nil && t.owner == u.owner
}

// ownerOf returns the address of the primary that serves channel's slot.
func (t *slotTable) ownerOf(channel string) string {
	return t.owner[keySlot(channel)]
}

// tagIn returns a hash tag, base followed by a number, whose slot addr
// serves, or "" if addr serves none.
func (t *slotTable) tagIn(addr, base string) string {
	if !t.serves(addr) {
		return ""
	}
	for i := 0; ; i++ {
		tag := base + strconv.Itoa(i)
		if t.owner[crc16(tag)%slotCount] == addr {
			return tag
		}
	}
}

func (t *slotTable) serves(addr string) bool {
	for _, p := range t.primaries {
		if p == addr {
			return true
		}
	}
	return false
}
