package drainhttp

import (
	"testing"
	"time"
)

func BenchmarkDrainCloseIdle(b *testing.B) {
	m, _ := NewManager(ManagerOptions{DrainTime: time.Minute})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if m.DrainClose() {
				b.Fatal("closing before any drain")
			}
		}
	})
}

func BenchmarkDrainCloseGradual(b *testing.B) {
	m, _ := NewManager(ManagerOptions{DrainTime: time.Hour})
	m.StartDrainSequence(nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.DrainClose()
		}
	})
}
