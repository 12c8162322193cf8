package bounded

import (
	"fmt"
	"sync"
	"testing"
)

func TestMapStaysBounded(t *testing.T) {
	m := New[string, int](8)
	for i := range 100 {
		m.Put(fmt.Sprint(i), i)
		if n := m.Len(); n > 8 {
			t.Fatalf("%d entries after %d puts, want at most 8", n, i+1)
		}
	}
	m.Put("99", -1) // an existing key is replaced, nothing evicted
	if v, ok := m.Get("99"); !ok || v != -1 || m.Len() != 8 {
		t.Fatalf("replace: %v %v, %d entries", v, ok, m.Len())
	}
	m.Delete("99")
	if _, ok := m.Get("99"); ok || m.Len() != 7 {
		t.Fatalf("delete: still there or %d entries", m.Len())
	}
}

func TestMapConcurrentUse(t *testing.T) {
	m := New[int, int](16)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				m.Put(g*1000+i, i)
				m.Get(i)
			}
		}()
	}
	wg.Wait()
	if m.Len() > 16 {
		t.Fatalf("%d entries", m.Len())
	}
}
