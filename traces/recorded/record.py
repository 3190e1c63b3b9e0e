#!/usr/bin/env python3
"""Records real phimon heartbeat arrivals on loopback under CPU stress.
3 sidecars (250 ms interval), node-1 records; busy loops load the CPU;
node-2 is SIGSTOPped a few times (sender pauses) and node-3 is SIGKILLed."""
import os, subprocess, time, signal, json, random
B="/tmp/phimon-rec"; D="/tmp/recrun/c"
subprocess.run(["rm","-rf",D]); os.makedirs(D)
subprocess.run([B,"certs","--out",D+"/certs","--cluster","rec","--node","node-1","--node","node-2","--node","node-3"],check=True,capture_output=True)
ports=[(17901+i, 19401+i) for i in range(3)]
seeds=", ".join(f'"127.0.0.1:{g}"' for g,_ in ports)
procs=[]
for i,(g,h) in enumerate(ports):
    n=f"node-{i+1}"; os.makedirs(f"{D}/{n}",exist_ok=True)
    open(f"{D}/{n}.toml","w").write(f'''[node]
id = "{n}"
listen = "127.0.0.1:{g}"
data_dir = "{D}/{n}"

[cluster]
name = "rec"
seeds = [{seeds}]

[tls]
ca = "{D}/certs/ca.pem"
cert = "{D}/certs/{n}.pem"
key = "{D}/certs/{n}.key"

[gossip]
interval = "250ms"

[http]
listen = "127.0.0.1:{h}"
''')
    args=[B,"run","--config",f"{D}/{n}.toml"]
    if i==0: args+=["--record-arrivals",f"{D}/rec"]
    procs.append(subprocess.Popen(args,stdout=open(f"{D}/{n}.log","w"),stderr=subprocess.STDOUT))
rng=random.Random(5)
events=[]
t0=time.time()
def log(e): events.append((round((time.time())*1000,3),e)); print(round(time.time()-t0,1),e,flush=True)
time.sleep(20)
# CPU stress: 6 busy loops on 2 cores, for the rest of the run, toggled on and off.
stress=[subprocess.Popen(["sh","-c","while :; do :; done"]) for _ in range(6)]
log("stress on (6 busy loops)")
end=t0+600
pauses=0
while time.time()<end-90:
    time.sleep(rng.uniform(20,60))
    if pauses<4:
        d=rng.uniform(0.4,3.0)
        os.kill(procs[1].pid,signal.SIGSTOP); log(f"SIGSTOP node-2 {d:.2f}s"); time.sleep(d); os.kill(procs[1].pid,signal.SIGCONT); log("SIGCONT node-2"); pauses+=1
    if rng.random()<0.3:
        for s in stress: os.kill(s.pid,signal.SIGSTOP)
        log("stress paused"); time.sleep(rng.uniform(10,30))
        for s in stress: os.kill(s.pid,signal.SIGCONT)
        log("stress resumed")
os.kill(procs[2].pid,signal.SIGKILL); log("SIGKILL node-3")
os.kill(procs[1].pid,signal.SIGKILL); 
log("SIGKILL node-2")
time.sleep(60)
for s in stress: s.kill()
os.kill(procs[0].pid,signal.SIGTERM); procs[0].wait(); log("SIGTERM node-1")
json.dump(events,open(f"{D}/events.json","w"))
