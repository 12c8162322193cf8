package oauthserver

import (
	"container/list"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// clientNetwork is what limits count as one client: an IPv4 address, or
// an IPv6 /64 (one subscriber's prefix: a single host can use any address
// in it).
func clientNetwork(ip string) string { return networkOf(ip, 32, 64) }

// wideNetwork is the site a client is in: an IPv4 /24 or an IPv6 /48, so
// that one attacker with many addresses or /64s (a /48 holds 65 536 of
// them) still meets a cap.
func wideNetwork(ip string) string { return "wide:" + networkOf(ip, 24, 48) }

// networkOf is the prefix of ip of v4 or v6 bits; ip itself when it does
// not parse.
func networkOf(ip string, v4, v6 int) string {
	a, err := netip.ParseAddr(strings.Trim(ip, "[]"))
	if err != nil {
		return ip
	}
	a = a.WithZone("").Unmap()
	bits := v6
	if a.Is4() {
		bits = v4
	}
	p, _ := a.Prefix(bits)
	return p.String()
}

// failureLimiter counts failures per key in a fixed window. It holds at
// most maxKeys keys: when full, it drops keys whose window has passed,
// then the oldest, so a flood of new keys costs bounded memory without
// forgetting every count at once.
type failureLimiter struct {
	mu      sync.Mutex
	max     int
	window  time.Duration
	now     func() time.Time
	maxKeys int
	counts  map[string]*list.Element // of *windowCount
	order   *list.List               // oldest window first
}

type windowCount struct {
	key   string
	start time.Time
	n     int
}

// limiterKeys bounds a failureLimiter's memory.
const limiterKeys = 100000

func newFailureLimiter(max int, window time.Duration, now func() time.Time) *failureLimiter {
	return &failureLimiter{max: max, window: window, now: now, maxKeys: limiterKeys, counts: map[string]*list.Element{}, order: list.New()}
}

func (l *failureLimiter) blocked(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.counts[key]
	if !ok {
		return false
	}
	c := e.Value.(*windowCount)
	return l.now().Sub(c.start) < l.window && c.n >= l.max
}

func (l *failureLimiter) fail(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if e, ok := l.counts[key]; ok {
		c := e.Value.(*windowCount)
		if now.Sub(c.start) < l.window {
			c.n++
			return
		}
		l.order.Remove(e)
		delete(l.counts, key)
	}
	// New windows go to the back, so the front is always the oldest.
	for l.order.Len() > 0 {
		front := l.order.Front()
		c := front.Value.(*windowCount)
		if now.Sub(c.start) < l.window && l.order.Len() < l.maxKeys {
			break
		}
		l.order.Remove(front)
		delete(l.counts, c.key)
	}
	l.counts[key] = l.order.PushBack(&windowCount{key: key, start: now, n: 1})
}

// pendingCodes caps the device codes issued and not yet done (token
// issued, denied or expired), in total and per client network. It lives
// in each replica's memory.
type pendingCodes struct {
	mu       sync.Mutex
	total    int
	perNet   int
	perWide  int
	now      func() time.Time
	codes    map[string]pendingCode // by device code store key
	byNet    map[string]int
	queue    []string // store keys in issue order: oldest (first to expire) first
	queueOff int
}

type pendingCode struct {
	network, wide string
	expires       time.Time
}

var (
	errTooManyCodes           = errors.New("too many device codes are waiting for approval; try again later")
	errTooManyCodesForNetwork = errors.New("too many device codes are waiting for approval from this network; try again later")
)

func newPendingCodes(total, perNet, perWide int, now func() time.Time) *pendingCodes {
	return &pendingCodes{total: total, perNet: perNet, perWide: perWide, now: now, codes: map[string]pendingCode{}, byNet: map[string]int{}}
}

// reserve counts a new code for a client's network and wider site, or
// refuses it.
func (p *pendingCodes) reserve(network, wide, code string, expires time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expire()
	if len(p.codes) >= p.total {
		return errTooManyCodes
	}
	if p.byNet[network] >= p.perNet || p.byNet[wide] >= p.perWide {
		return errTooManyCodesForNetwork
	}
	p.codes[code] = pendingCode{network: network, wide: wide, expires: expires}
	p.byNet[network]++
	p.byNet[wide]++
	p.queue = append(p.queue, code)
	return nil
}

// release frees the slot of a code that is done.
func (p *pendingCodes) release(code string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drop(code)
}

func (p *pendingCodes) drop(code string) {
	c, ok := p.codes[code]
	if !ok {
		return
	}
	delete(p.codes, code)
	for _, n := range []string{c.network, c.wide} {
		if p.byNet[n]--; p.byNet[n] <= 0 {
			delete(p.byNet, n)
		}
	}
}

// expire frees the slots of expired codes; p.mu is held.
func (p *pendingCodes) expire() {
	now := p.now()
	for p.queueOff < len(p.queue) {
		code := p.queue[p.queueOff]
		if c, ok := p.codes[code]; ok && now.Before(c.expires) {
			break
		}
		p.drop(code)
		p.queue[p.queueOff] = ""
		p.queueOff++
	}
	// Compact when the consumed head dominates, or when released codes
	// left the queue much longer than the live set.
	if p.queueOff > len(p.queue)/2 || len(p.queue)-p.queueOff > 2*len(p.codes)+64 {
		live := make([]string, 0, len(p.codes))
		for _, code := range p.queue[p.queueOff:] {
			if _, ok := p.codes[code]; ok {
				live = append(live, code)
			}
		}
		p.queue, p.queueOff = live, 0
	}
}
