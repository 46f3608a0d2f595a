package drainhttp

import (
	"fmt"
	"net/http"
	"reflect"
	"sync"
)

// Server mirrors every exported field of http.Server, with the same name
// and type, so that it is a drop-in replacement; a field that the running
// toolchain's http.Server lacks (MaxHeaderValueCount and
// DisableClientPriority before Go 1.27) is accepted and ignored. The
// fields are copied by name, so the same source compiles on every
// toolchain, and TestServer_HasEveryHTTPServerField fails on a Go release
// that adds one.

type fieldPair struct{ ours, theirs int }

// mirroredFields lists the fields of Server that http.Server also has.
var mirroredFields = sync.OnceValue(func() []fieldPair {
	ours, theirs := reflect.TypeFor[Server](), reflect.TypeFor[http.Server]()
	var pairs []fieldPair
	for i := range ours.NumField() {
		f := ours.Field(i)
		if !f.IsExported() {
			continue
		}
		if g, ok := theirs.FieldByName(f.Name); ok && g.Type == f.Type && len(g.Index) == 1 {
			pairs = append(pairs, fieldPair{i, g.Index[0]})
		}
	}
	return pairs
})

// copyToHTTPServer sets every field of dst that s mirrors.
func (s *Server) copyToHTTPServer(dst *http.Server) {
	src, d := reflect.ValueOf(s).Elem(), reflect.ValueOf(dst).Elem()
	for _, p := range mirroredFields() {
		d.Field(p.theirs).Set(src.Field(p.ours))
	}
}

// notInherited are the http.Server fields an HTTP/2 connection's own
// server does not take from the outer server: it has its own handler,
// hooks and protocols, and must keep a nil TLSConfig (net/http's HTTP/2
// setup writes to it).
var notInherited = map[string]bool{
	"Addr": true, "Handler": true, "DisableGeneralOptionsHandler": true,
	"TLSConfig": true, "TLSNextProto": true, "ConnState": true,
	"BaseContext": true, "ConnContext": true, "Protocols": true,
}

// inheritedFields lists the http.Server fields an HTTP/2 connection's own
// server takes from the outer one: timeouts, limits, ErrorLog, HTTP2 and
// whatever a later Go adds.
var inheritedFields = sync.OnceValue(func() []int {
	t := reflect.TypeFor[http.Server]()
	var idx []int
	for i := range t.NumField() {
		if f := t.Field(i); f.IsExported() && !notInherited[f.Name] {
			idx = append(idx, i)
		}
	}
	return idx
})

// inheritH2Fields copies outer's settings to an HTTP/2 connection's own
// server.
func inheritH2Fields(dst, outer *http.Server) {
	d, o := reflect.ValueOf(dst).Elem(), reflect.ValueOf(outer).Elem()
	for _, i := range inheritedFields() {
		d.Field(i).Set(o.Field(i))
	}
}

// configSnapshot is a copy of every exported field of a Server, taken when
// it is first used, to report a field changed afterwards.
type configSnapshot reflect.Value

func (s *Server) snapshotConfig() configSnapshot {
	v := reflect.New(reflect.TypeFor[Server]()).Elem()
	src := reflect.ValueOf(s).Elem()
	for i := range v.NumField() {
		if v.Type().Field(i).IsExported() {
			v.Field(i).Set(src.Field(i))
		}
	}
	return configSnapshot(v)
}

// changedField returns the name of the first exported field of s that
// differs from the snapshot, or "".
func (s *Server) changedField(snap configSnapshot) string {
	old, cur := reflect.Value(snap), reflect.ValueOf(s).Elem()
	for i := range cur.NumField() {
		f := cur.Type().Field(i)
		if f.IsExported() && !sameValue(old.Field(i), cur.Field(i)) {
			return f.Name
		}
	}
	return ""
}

// sameValue reports whether a and b (of one type) are the same setting:
// equal plain values, the same pointer, map, slice or function.
func sameValue(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Func, reflect.Map, reflect.Pointer, reflect.Chan, reflect.UnsafePointer:
		return a.Pointer() == b.Pointer()
	case reflect.Slice:
		return a.Pointer() == b.Pointer() && a.Len() == b.Len()
	case reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		if a.Elem().Type() != b.Elem().Type() {
			return false
		}
		return sameValue(a.Elem(), b.Elem())
	case reflect.Struct:
		for i := range a.NumField() {
			if !sameValue(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Array:
		for i := range a.Len() {
			if !sameValue(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	}
	if a.CanInterface() {
		return a.Interface() == b.Interface()
	}
	return fmt.Sprint(a) == fmt.Sprint(b)
}
