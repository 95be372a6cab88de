package affinity

// sysGetcpu is getcpu(2)'s number, which package syscall lists on every
// architecture but amd64.
const sysGetcpu = 309
