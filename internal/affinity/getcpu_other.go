//go:build linux && !amd64

package affinity

import "syscall"

const sysGetcpu = syscall.SYS_GETCPU
