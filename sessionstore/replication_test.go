package sessionstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// threeNodes starts three memcached and a store over them with replicas 2.
func threeNodes(t *testing.T) ([]*memcached, *Memcache) {
	t.Helper()
	nodes := []*memcached{startMemcached(t), startMemcached(t), startMemcached(t)}
	return nodes, newMemcacheStore(t, nodes[0].addr(), nodes[1].addr(), nodes[2].addr())
}

// Each record is on the first two servers of its ranking, and only there.
func TestReplicasHoldEachRecordOnTwoServers(t *testing.T) {
	nodes, s := threeNodes(t)
	ctx := context.Background()
	for i := 0; i < 60; i++ {
		k := fmt.Sprintf("s1:rep-%d", i)
		if err := s.Set(ctx, k, []byte("v"), time.Hour); err != nil {
			t.Fatal(err)
		}
		want := map[string]bool{}
		for _, a := range s.replicasOf(k, 2) {
			want[a] = true
		}
		for _, n := range nodes {
			if got := holds(t, n.addr(), k); got != want[n.addr()] {
				t.Fatalf("%s on %s: %v, want %v (replicas %v)", k, n.addr(), got, want[n.addr()], s.replicasOf(k, 2))
			}
		}
	}
	// A delete reaches both.
	k := "s1:rep-0"
	if err := s.Delete(ctx, k); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if holds(t, n.addr(), k) {
			t.Fatalf("%s still on %s after delete", k, n.addr())
		}
	}
}

// Killing any one of three nodes loses nothing: every record is read from
// its other replica, at once, and writes go on. When the node comes back
// (empty), nothing is lost either, and nothing ended meanwhile returns.
func TestReplicasOneNodeDownLosesNothing(t *testing.T) {
	for victim := 0; victim < 3; victim++ {
		t.Run(fmt.Sprintf("node %d", victim), func(t *testing.T) {
			nodes, s := threeNodes(t)
			ctx := context.Background()
			const n = 150
			keys := make([]string, n)
			for i := range keys {
				keys[i] = fmt.Sprintf("s1:k-%d", i)
				if err := s.Set(ctx, keys[i], []byte("v1"), time.Hour); err != nil {
					t.Fatal(err)
				}
			}
			nodes[victim].stop()
			for _, k := range keys {
				if v, err := s.Get(ctx, k); err != nil || string(v) != "v1" {
					t.Fatalf("%s with node %d down: %q, %v", k, victim, v, err)
				}
			}
			got, err := s.GetMulti(ctx, keys)
			if err != nil || len(got) != n {
				t.Fatalf("get multi with node %d down: %d records, %v", victim, len(got), err)
			}
			// Changes while it is down: deleted (signed out), set (sign
			// out everywhere), replaced (idle clock), touched.
			for i, k := range keys {
				var err error
				switch i % 4 {
				case 0:
					err = s.Delete(ctx, k)
				case 1:
					err = s.Set(ctx, k, []byte("v2"), time.Hour)
				case 2:
					err = s.Replace(ctx, k, []byte("v2"), time.Hour)
				case 3:
					err = s.Touch(ctx, k, time.Hour)
				}
				if err != nil {
					t.Fatalf("change %d of %s with node %d down: %v", i%4, k, victim, err)
				}
			}
			if err := s.Ping(ctx); err != nil {
				t.Fatal(err)
			}
			nodes[victim].start() // empty
			waitUntil(t, 10*time.Second, "the node to be used again", func() bool { return s.ring.upMembers() == 3 })
			for i, k := range keys {
				v, err := s.Get(ctx, k)
				switch i % 4 {
				case 0:
					if !errors.Is(err, ErrNotFound) {
						t.Fatalf("%s deleted while node %d was down: %q, %v", k, victim, v, err)
					}
				case 1, 2:
					if err != nil || string(v) != "v2" {
						t.Fatalf("%s changed while node %d was down: %q, %v; want v2", k, victim, v, err)
					}
				case 3:
					if err != nil || string(v) != "v1" {
						t.Fatalf("%s touched while node %d was down: %q, %v", k, victim, v, err)
					}
				}
			}
			// Records the returned node lost are still found (on their
			// other replica), and written records keep working.
			for i, k := range keys {
				if i%4 == 0 {
					continue
				}
				if err := s.Replace(ctx, k, []byte("v3"), time.Hour); err != nil {
					t.Fatalf("replace of %s after node %d returned: %v", k, victim, err)
				}
				if err := s.Touch(ctx, k, time.Hour); err != nil {
					t.Fatalf("touch of %s after node %d returned: %v", k, victim, err)
				}
			}
		})
	}
}

// A node that hangs (cut off) delays requests by about one timeout, once,
// and refuses none.
func TestReplicasHungNodeDelaysByOneTimeoutAndFailsNothing(t *testing.T) {
	nodes, s := threeNodes(t)
	ctx := context.Background()
	keys := keysOn(s, nodes[0].addr(), 20, "s1:hung")
	for _, k := range keys {
		if err := s.Set(ctx, k, []byte("v"), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	nodes[0].pause()
	defer nodes[0].resume()
	for i, k := range keys {
		start := time.Now()
		v, err := s.Get(ctx, k)
		d := time.Since(start)
		if err != nil || string(v) != "v" {
			t.Fatalf("read %d with the first replica hung: %q, %v", i, v, err)
		}
		if d > s.timeout+time.Second {
			t.Fatalf("read %d took %s, want at most about one timeout (%s)", i, d, s.timeout)
		}
		if i == 0 && s.ring.upMembers() != 2 {
			t.Fatal("the hung node was not set aside by the first read that waited for it")
		}
	}
}

// A read that can reach none of a key's replicas fails closed: an error,
// never "not found" (which would sign the user out, or worse, let a
// single-use code be used again).
func TestReplicasReadThatReachesNoReplicaFails(t *testing.T) {
	nodes, s := threeNodes(t)
	ctx := context.Background()
	byAddr := map[string]*memcached{}
	for _, n := range nodes {
		byAddr[n.addr()] = n
	}
	k := "s1:both-down"
	if err := s.Set(ctx, k, []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	reps := s.replicasOf(k, 2)
	byAddr[reps[0]].pause()
	byAddr[reps[1]].pause()
	defer byAddr[reps[0]].resume()
	defer byAddr[reps[1]].resume()
	if v, err := s.Get(ctx, k); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("get with both replicas cut off: %q, %v; want a store error", v, err)
	}
	// Now both are set aside: the key's replicas are the third node and
	// itself; what it says is the answer.
	if _, err := s.Get(ctx, k); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get once both are set aside: %v, want not found from the last node", err)
	}
}

func TestReplicasGetMultiReachingNoReplicaFails(t *testing.T) {
	nodes, s := threeNodes(t)
	ctx := context.Background()
	k := keysOn(s, nodes[0].addr(), 1, "s1:gm")[0]
	if err := s.Set(ctx, k, []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		n.stop()
	}
	if got, err := s.GetMulti(ctx, []string{k, "s1:other"}); err == nil {
		t.Fatalf("get multi with every node down: %v, nil; want a store error", got)
	}
}

// Add is decided by the first replica; a second replica that holds the
// key (the first lost it) still makes it ErrExists, and the attempt
// leaves nothing behind.
func TestReplicasAddSeesARecordOnTheSecondReplica(t *testing.T) {
	_, s := threeNodes(t)
	ctx := context.Background()
	k := "di:code"
	if err := s.Add(ctx, k, []byte("first"), time.Hour); err != nil {
		t.Fatal(err)
	}
	reps := s.replicasOf(k, 2)
	direct := memcache.New(reps[0])
	defer direct.Close()
	if err := direct.Delete(k); err != nil { // the first replica lost it
		t.Fatal(err)
	}
	if err := s.Add(ctx, k, []byte("second"), time.Hour); !errors.Is(err, ErrExists) {
		t.Fatalf("add over a record on the second replica: %v, want ErrExists", err)
	}
	if v, err := s.Get(ctx, k); err != nil || string(v) != "first" {
		t.Fatalf("after the refused add: %q, %v; want first", v, err)
	}
	if holds(t, reps[0], k) {
		t.Fatal("the refused add left its record on the first replica")
	}
}

// Replace and Touch find the record on the second replica when the first
// lost it, and do not create it on the first (a sign-out racing with that
// could bring the record back).
func TestReplicasReplaceAndTouchUseTheReplicaThatHoldsTheRecord(t *testing.T) {
	_, s := threeNodes(t)
	ctx := context.Background()
	k := "s1:lost-on-first"
	if err := s.Set(ctx, k, []byte("v1"), time.Hour); err != nil {
		t.Fatal(err)
	}
	reps := s.replicasOf(k, 2)
	direct := memcache.New(reps[0])
	defer direct.Close()
	if err := direct.Delete(k); err != nil {
		t.Fatal(err)
	}
	if err := s.Replace(ctx, k, []byte("v2"), time.Hour); err != nil {
		t.Fatalf("replace: %v, want the second replica's record replaced", err)
	}
	if err := s.Touch(ctx, k, time.Hour); err != nil {
		t.Fatalf("touch: %v", err)
	}
	if v, err := s.Get(ctx, k); err != nil || string(v) != "v2" {
		t.Fatalf("after replace: %q, %v", v, err)
	}
	if holds(t, reps[0], k) {
		t.Fatal("replace created the record on the replica that had lost it")
	}
	if err := s.Delete(ctx, k); err != nil {
		t.Fatal(err)
	}
	if err := s.Replace(ctx, k, []byte("v3"), time.Hour); !errors.Is(err, ErrNotFound) {
		t.Fatalf("replace after delete: %v, want ErrNotFound", err)
	}
	if err := s.Touch(ctx, k, time.Hour); !errors.Is(err, ErrNotFound) {
		t.Fatalf("touch after delete: %v, want ErrNotFound", err)
	}
}

// A server that drops out of a key's replicas (another one came back
// ahead of it) keeps its copy; the key's next change deletes it there, so
// that when the other one fails again the copy cannot come back.
func TestReplicasCopyOnAServerThatDroppedOutIsDeletedOnChange(t *testing.T) {
	nodes, s := threeNodes(t)
	ctx := context.Background()
	byAddr := map[string]*memcached{}
	for _, n := range nodes {
		byAddr[n.addr()] = n
	}
	// Keys whose first replica is node 0: while it is down they go to
	// their second replica and the third node.
	keys := keysOn(s, nodes[0].addr(), 10, "s1:drop")
	nodes[0].pause()
	_, _ = s.Get(ctx, keys[0]) // sets node 0 aside
	for _, k := range keys {
		if err := s.Set(ctx, k, []byte("written while node 0 was down"), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	nodes[0].resume()
	waitUntil(t, 10*time.Second, "node 0 to be used again", func() bool { return s.ring.upMembers() == 3 })
	// Half are signed out, half replaced (sign out everywhere): that
	// reaches node 0 and the second replica, and deletes the key from the
	// third node, whose copy would be stale from now on.
	for i, k := range keys {
		var err error
		if i%2 == 0 {
			err = s.Delete(ctx, k)
		} else {
			err = s.Set(ctx, k, []byte("current"), time.Hour)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range keys {
		reps := s.replicasOf(k, 2)
		for _, n := range nodes {
			if n.addr() != reps[0] && n.addr() != reps[1] && holds(t, n.addr(), k) {
				t.Fatalf("%s still on %s, which is not one of its replicas", k, n.addr())
			}
		}
	}
	// Node 0 and the second replica of keys[0] fail: for the keys they
	// both hold, only the third node is left.
	second := byAddr[s.replicasOf(keys[0], 2)[1]]
	nodes[0].pause()
	second.pause()
	defer nodes[0].resume()
	defer second.resume()
	_, _ = s.Get(ctx, keys[0])
	_, _ = s.Get(ctx, keys[0])
	for _, k := range keys {
		if v, err := s.Get(ctx, k); string(v) == "written while node 0 was down" {
			t.Fatalf("%s: a stale copy came back (%q, %v)", k, v, err)
		}
	}
}

// twoNodes starts two memcached and a store over them with replicas 2:
// every record on both.
func twoNodes(t *testing.T) ([]*memcached, *Memcache) {
	t.Helper()
	nodes := []*memcached{startMemcached(t), startMemcached(t)}
	return nodes, newMemcacheStore(t, nodes[0].addr(), nodes[1].addr())
}

// An append goes on with one replica down, read from the other; with
// every replica down it fails closed, never as if the list were stored.
func TestReplicasAppendWithAReplicaDown(t *testing.T) {
	nodes, s := twoNodes(t)
	ctx := context.Background()
	byAddr := map[string]*memcached{nodes[0].addr(): nodes[0], nodes[1].addr(): nodes[1]}
	k := "ux:alice"
	if err := s.Append(ctx, k, []byte("a1"), time.Hour); err != nil {
		t.Fatal(err)
	}
	reps := s.replicasOf(k, 2)
	byAddr[reps[0]].stop() // the replica reads go to first
	if err := s.Append(ctx, k, []byte("b2"), time.Hour); err != nil {
		t.Fatalf("append with one replica down: %v", err)
	}
	if v, err := s.Get(ctx, k); err != nil || string(v) != "a1b2" {
		t.Fatalf("get with one replica down: %q, %v; want a1b2", v, err)
	}
	byAddr[reps[1]].stop()
	for i := 0; i < 3; i++ { // failing, then with both set aside
		err := s.Append(ctx, k, []byte("c3"), time.Hour)
		if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrExists) {
			t.Fatalf("append %d with every replica down: %v, want a store error", i, err)
		}
	}
}

// A replica that lost the list (restarted, flushed) is not given a list
// of its own ahead of the replica that holds it: reads, which take the
// first record in ranking order, would lose every earlier entry. A
// replica behind it gets the entries from then on.
func TestReplicasAppendKeepsTheWholeListReadable(t *testing.T) {
	ctx := context.Background()
	for lost := 0; lost < 2; lost++ {
		t.Run(fmt.Sprintf("replica %d lost it", lost), func(t *testing.T) {
			_, s := threeNodes(t)
			k := "ux:bob"
			for _, e := range []string{"a1", "b2"} {
				if err := s.Append(ctx, k, []byte(e), time.Hour); err != nil {
					t.Fatal(err)
				}
			}
			reps := s.replicasOf(k, 2)
			direct := memcache.New(reps[lost])
			defer direct.Close()
			if err := direct.Delete(k); err != nil {
				t.Fatal(err)
			}
			if err := s.Append(ctx, k, []byte("c3"), time.Hour); err != nil {
				t.Fatal(err)
			}
			if v, err := s.Get(ctx, k); err != nil || string(v) != "a1b2c3" {
				t.Fatalf("after the append: %q, %v; want a1b2c3", v, err)
			}
			it, err := direct.Get(k)
			switch {
			case lost == 0 && !errors.Is(err, memcache.ErrCacheMiss):
				t.Fatalf("first replica, which lost the list: %v, %v; want it left empty", it, err)
			case lost == 1 && (err != nil || string(it.Value) != "c3"):
				t.Fatalf("second replica, which lost the list: %v, %v; want the entries since", it, err)
			}
		})
	}
}

// Appends racing to create a list, from two Gatehouse processes, each end
// up once on every replica, not only on the one reads go to.
func TestReplicasConcurrentAppendsReachEveryReplica(t *testing.T) {
	nodes, s1 := threeNodes(t)
	s2 := newMemcacheStore(t, nodes[0].addr(), nodes[1].addr(), nodes[2].addr())
	ctx := context.Background()
	const goroutines, each = 8, 20
	for round := 0; round < 5; round++ {
		k := fmt.Sprintf("ux:race-%d", round)
		var wg sync.WaitGroup
		for g := 0; g < goroutines; g++ {
			s := s1
			if g%2 == 1 {
				s = s2
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < each; j++ {
					if err := s.Append(ctx, k, []byte(fmt.Sprintf("%d-%02d;", g, j)), time.Hour); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		for _, addr := range s1.replicasOf(k, 2) {
			c := memcache.New(addr)
			it, err := c.Get(k)
			c.Close()
			if err != nil {
				t.Fatalf("%s on replica %s: %v", k, addr, err)
			}
			seen := map[string]int{}
			for i := 0; i+5 <= len(it.Value); i += 5 {
				seen[string(it.Value[i:i+5])]++
			}
			if len(it.Value) != goroutines*each*5 || len(seen) != goroutines*each {
				t.Fatalf("%s on replica %s: %d bytes, %d distinct entries; want each of %d once", k, addr, len(it.Value), len(seen), goroutines*each)
			}
		}
	}
}

// An append deletes the key from servers in use that are not its
// replicas, as every write does: a copy there would be stale.
func TestReplicasAppendDeletesCopiesElsewhere(t *testing.T) {
	nodes, s := threeNodes(t)
	ctx := context.Background()
	k := "ux:carol"
	reps := s.replicasOf(k, 2)
	for _, n := range nodes {
		if n.addr() == reps[0] || n.addr() == reps[1] {
			continue
		}
		c := memcache.New(n.addr())
		defer c.Close()
		if err := c.Set(&memcache.Item{Key: k, Value: []byte("stale")}); err != nil {
			t.Fatal(err)
		}
		if err := s.Append(ctx, k, []byte("a1"), time.Hour); err != nil {
			t.Fatal(err)
		}
		if holds(t, n.addr(), k) {
			t.Fatalf("%s still on %s, which is not one of its replicas", k, n.addr())
		}
	}
}
