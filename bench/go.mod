module github.com/drainhttp/drainhttp/bench

go 1.26.8

replace github.com/drainhttp/drainhttp => ../

require github.com/drainhttp/drainhttp v0.0.0-00010101000000-000000000000

require (
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/time v0.16.0 // indirect
)
