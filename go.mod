module github.com/tini-hot/tini-hot

go 1.26.8

require (
	github.com/prometheus/procfs v0.23.0
	github.com/spf13/pflag v1.1.0
	golang.org/x/sys v0.50.0
)
