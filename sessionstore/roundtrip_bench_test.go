package sessionstore

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// BenchmarkMemcachedRoundTrip measures what one memcached round trip costs
// per authenticated request: a multi-get of a session record (~600 bytes)
// and its user's generation record (22 bytes), as session.Manager.Load
// does, and a get of one key. Three clients read the same records from one
// real memcached (one worker thread, as `make bench` starts it):
//
//   - store: the Memcache store, as Gatehouse configures it;
//   - gomemcache: a bare gomemcache client (its protocol code alone);
//   - wire: one connection per goroutine, writing the request and reading
//     the reply through a bufio.Reader (the protocol's floor: one write
//     and one read syscall per round trip).
//
// Each runs with 32 operations at once (conns=32, the bench's connections)
// and one at a time (conns=1: every round trip wakes memcached alone, as
// most do in the end-to-end bench).
//
// Besides ns/op and allocs/op it reports CPU per operation: cpu-us/op is
// this process (getrusage), memcached-cpu-us/op the memcached process
// (utime+stime from /proc/<pid>/stat), total-cpu-us/op both. Run it pinned
// to one CPU, as `make bench` pins the proxy and memcached together,
// with -cpu 1 (GOMAXPROCS 1, as the pinned proxy has):
//
//	taskset -c 1 go test -run '^$' -bench MemcachedRoundTrip -benchtime 2s -count 3 -cpu 1 ./sessionstore
func BenchmarkMemcachedRoundTrip(b *testing.B) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		b.Skip("needs /proc")
	}
	mc := &memcached{t: b, port: freePort(b), args: []string{"-t", "1"}}
	mc.start()
	b.Cleanup(mc.stop)
	addr := mc.addr()

	sessionKey, genKey := "s1:"+randomName(b), "u2:"+randomName(b)
	sessionRec, genRec := randomBytes(b, 600), []byte(randomName(b)[:22])
	store, err := NewMemcache(MemcacheConfig{Servers: []string{addr}, Replicas: DefaultReplicas,
		Timeout: 250 * time.Millisecond, MaxIdleConns: 64, ResolveInterval: DefaultResolveInterval})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = store.Close() })
	ctx := context.Background()
	for _, kv := range []struct {
		k string
		v []byte
	}{{sessionKey, sessionRec}, {genKey, genRec}} {
		if err := store.Set(ctx, kv.k, kv.v, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	keys := []string{sessionKey, genKey}
	checkMulti := func(got map[string][]byte) error {
		if !bytes.Equal(got[sessionKey], sessionRec) || !bytes.Equal(got[genKey], genRec) {
			return errors.New("wrong records")
		}
		return nil
	}

	raw := memcache.New(addr)
	raw.Timeout, raw.MaxIdleConns = 250*time.Millisecond, 64
	b.Cleanup(func() { _ = raw.Close() })

	type client struct {
		name          string
		multi, single func() (op func() error, done func())
	}
	shared := func(op func() error) func() (func() error, func()) {
		return func() (func() error, func()) { return op, func() {} }
	}
	clients := []client{
		{"store",
			shared(func() error {
				got, err := store.GetMulti(ctx, keys)
				if err != nil {
					return err
				}
				return checkMulti(got)
			}),
			shared(func() error {
				_, err := store.Get(ctx, genKey)
				return err
			})},
		{"gomemcache",
			shared(func() error {
				got, err := raw.GetMulti(keys)
				if err != nil {
					return err
				}
				if len(got) != 2 {
					return errors.New("wrong records")
				}
				return nil
			}),
			shared(func() error {
				_, err := raw.Get(genKey)
				return err
			})},
		{"wire",
			wireGets(addr, keys, len(sessionRec)+len(genRec)),
			wireGets(addr, keys[1:], len(genRec))},
	}
	// 32 operations at once, as the bench's connections; and one at a
	// time, where every round trip pays memcached's wake-up alone.
	for _, conns := range []int{roundTripConns, 1} {
		for _, c := range clients {
			b.Run(fmt.Sprintf("conns=%d/%s/GetMulti2", conns, c.name), func(b *testing.B) { roundTrips(b, mc, conns, c.multi) })
			b.Run(fmt.Sprintf("conns=%d/%s/Get1", conns, c.name), func(b *testing.B) { roundTrips(b, mc, conns, c.single) })
		}
	}
}

// roundTripConns is the connections of `make bench`.
const roundTripConns = 32

// roundTrips runs the operation that each goroutine gets from newOp
// (done ends it) about conns at a time, and reports the CPU each one cost
// this process and memcached.
func roundTrips(b *testing.B, mc *memcached, conns int, newOp func() (op func() error, done func())) {
	pid := mc.cmd.Process.Pid
	b.ReportAllocs()
	b.SetParallelism(max(1, conns/runtime.GOMAXPROCS(0)))
	self0, mc0 := selfCPU(b), procCPU(b, pid)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		op, done := newOp()
		defer done()
		for pb.Next() {
			if err := op(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	self, other := selfCPU(b)-self0, procCPU(b, pid)-mc0
	perOp := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) / float64(b.N) }
	b.ReportMetric(perOp(self), "cpu-us/op")
	b.ReportMetric(perOp(other), "memcached-cpu-us/op")
	b.ReportMetric(perOp(self+other), "total-cpu-us/op")
}

// wireGets returns, for each goroutine, an operation on a connection of
// its own: "get keys", then the reply read until END, checking that it
// carried want value bytes.
func wireGets(addr string, keys []string, want int) func() (func() error, func()) {
	req := []byte("get")
	for _, k := range keys {
		req = append(append(req, ' '), k...)
	}
	req = append(req, "\r\n"...)
	return func() (func() error, func()) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return func() error { return err }, func() {}
		}
		r := bufio.NewReaderSize(c, 4096)
		value := make([]byte, 0, 4096)
		return func() error {
			if _, err := c.Write(req); err != nil {
				return err
			}
			got := 0
			for {
				line, err := r.ReadSlice('\n')
				if err != nil {
					return err
				}
				if bytes.Equal(line, []byte("END\r\n")) {
					break
				}
				// VALUE <key> <flags> <bytes>\r\n, then the data and \r\n.
				f := bytes.Fields(line)
				if len(f) != 4 || string(f[0]) != "VALUE" {
					return errors.New("unexpected reply " + strconv.Quote(string(line)))
				}
				n, err := strconv.Atoi(string(f[3]))
				if err != nil || n+2 > cap(value) {
					return errors.New("bad value length")
				}
				if _, err := io.ReadFull(r, value[:n+2]); err != nil {
					return err
				}
				got += n
			}
			if got != want {
				return errors.New("wrong records")
			}
			return nil
		}, func() { _ = c.Close() }
	}
}

// selfCPU is this process's user+system CPU time.
func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is utime+stime of process pid (all its threads) from
// /proc/<pid>/stat, in clock ticks of 1/100 s (USER_HZ on Linux).
func procCPU(b *testing.B, pid int) time.Duration {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		b.Fatal(err)
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		b.Fatalf("unexpected /proc/%d/stat", pid)
	}
	f := bytes.Fields(stat[i+1:])
	if len(f) < 13 {
		b.Fatalf("unexpected /proc/%d/stat", pid)
	}
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	ut, _ := strconv.ParseUint(string(f[11]), 10, 64)
	st, _ := strconv.ParseUint(string(f[12]), 10, 64)
	return time.Duration(ut+st) * (time.Second / 100)
}

func randomBytes(b *testing.B, n int) []byte {
	p := make([]byte, n)
	if _, err := rand.Read(p); err != nil {
		b.Fatal(err)
	}
	return p
}

// randomName is a 43-character key part, as session and generation keys
// have (base64 of a SHA-256).
func randomName(b *testing.B) string {
	return base64.RawURLEncoding.EncodeToString(randomBytes(b, 32))
}
