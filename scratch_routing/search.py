import math, sys, itertools, os, json, torch, torch.nn as nn, torch.nn.functional as F
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from core.models.char_transformer import Block
from core.data.toy import toy_fox_batches
torch.set_num_threads(2)

class M(nn.Module):
    def __init__(self, V, nl, d=64):
        super().__init__()
        self.embedding = nn.Embedding(V, d)
        self.layers = nn.ModuleList([Block(d, 4) for _ in range(nl)])
        self.output_head = nn.Linear(d, V, bias=False)
    def forward(self, x):
        h = self.embedding(x); outs = []
        for l in self.layers:
            h = l(h); outs.append(h)
        return outs

BL = {"q": lambda b: b.attn.q_proj, "k": lambda b: b.attn.k_proj, "v": lambda b: b.attn.v_proj, "o": lambda b: b.attn.o_proj,
      "1": lambda b: b.ffn.w1, "2": lambda b: b.ffn.w2, "3": lambda b: b.ffn.w3}

def init(m, top, blk, d=64):
    for c in top:
        if c == "E": nn.init.trunc_normal_(m.embedding.weight, std=0.02)
        if c == "H": nn.init.trunc_normal_(m.output_head.weight, std=1/math.sqrt(d))
        if c == "L":
            for b in m.layers:
                for t in blk: nn.init.trunc_normal_(BL[t](b).weight, std=1/math.sqrt(d))

def evaluate(m, val, tau, routed):
    m.eval(); L=[]; A=[]; S=[]; C=[]
    with torch.no_grad():
        for x, y in val:
            hs = m(x)
            if routed:
                s = m.output_head(hs[1]); dp = m.output_head(hs[3])
                conf = F.softmax(s, -1).max(-1).values; mk = conf >= tau
                lo = torch.where(mk.unsqueeze(-1), s, dp); sr = mk.float().mean().item()
            else:
                lo = m.output_head(hs[-1]); sr = 0.0
            L.append(F.cross_entropy(lo.reshape(-1, lo.size(-1)), y.reshape(-1)).item())
            A.append((lo.argmax(-1) == y).float().mean().item()); S.append(sr); C.append((2*sr+4*(1-sr))/4)
    n = len(val)
    return [math.exp(sum(L)/n), 100*sum(A)/n, 100*sum(S)/n, 100*sum(C)/n]

def run(kind, top, blk, weights=(0, .5, 0, .5), epochs=1, patience=5, taus=()):
    data = toy_fox_batches(); V = data.vocab_size
    torch.manual_seed(42)
    nl = 2 if kind == "std2" else 4
    m = M(V, nl); init(m, top, blk)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    best = math.inf; bad = 0; log = []
    for ep in range(1, epochs+1):
        m.train(); tl = 0
        for x, y in data.train:
            opt.zero_grad(); hs = m(x)
            if kind == "routed":
                loss = sum(w*F.cross_entropy(m.output_head(h).reshape(-1, V), y.reshape(-1)) for w, h in zip(weights, hs) if w)
            else:
                loss = F.cross_entropy(m.output_head(hs[-1]).reshape(-1, V), y.reshape(-1))
            loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step(); tl += loss.item()
        r = evaluate(m, data.val, 0.8, kind == "routed")
        log.append([ep, tl/len(data.train)] + r)
        if r[0] < best: best = r[0]; bad = 0
        else:
            bad += 1
            if bad >= patience: break
    tab = [[t] + evaluate(m, data.val, t, True) for t in taus]
    return log, tab

if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "grid":
        idx, nw = int(sys.argv[2]), int(sys.argv[3])
        tops = ["".join(p) for p in itertools.permutations("ELH")] + ["LH", "HL"]
        blks = []
        for f in itertools.permutations("123"):
            blks += ["qkvo" + "".join(f), "".join(f) + "qkvo"]
        cands = [(t, b) for t in tops for b in blks]
        for i, (t, b) in enumerate(cands):
            if i % nw != idx: continue
            log, _ = run("routed", t, b)
            print(json.dumps({"top": t, "blk": b, "ep1": ["%.2f" % v for v in log[0][2:]]}), flush=True)
    else:
        kind, top, blk = sys.argv[2:5]
        extra = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
        log, tab = run(kind, top, blk, **extra)
        for l in log: print(["%.4f" % v for v in l])
        for l in tab: print(["%.2f" % v for v in l])
