"""Diagnostic behind benchmarks/results/diffusion_world.md: can the smoke be removed at the hook
by subtracting its token-mean direction (what an image-level SAE edits), or only token-wise?

    python scripts/diffusion_world_steering_diagnostic.py
"""
import torch
from sae_causal_plugin.worlds import diffusion_world as dw
torch.set_num_threads(1)
pipe=dw.load_pretrained(); att=pipe.unet.mid_block.attentions[0]
lab_on=dw.labels(["house","chimney","smoke"]); lab_off=dw.labels(["house","chimney"])
caps={}
def cap(name):
    def h(m,i,o):
        x=o[0] if isinstance(o,tuple) else o.sample
        caps.setdefault(name,[]).append((x-i[0]).detach())
    return h
noise=torch.randn(32,3,16,16,generator=torch.Generator().manual_seed(0))
for name,lab in (("on",lab_on),("off",lab_off)):
    hd=att.register_forward_hook(cap(name)); pipe(lab[None].expand(32,-1).clone(),latents=noise); hd.remove()
on=torch.stack(caps["on"]); off=torch.stack(caps["off"])  # [steps,B,C,H,W]
diff=on-off
mean_dir=diff.mean((1,3,4))  # per step [steps, C]
print("per-token share of the on-off difference not explained by its token mean:",
      float((diff-diff.mean((3,4),keepdim=True)).pow(2).sum()/diff.pow(2).sum()))
for mode in ("mean","full"):
    step=[0]
    def edit(m,i,o):
        k=step[0]; step[0]+=1
        d = mean_dir[k][None,:,None,None] if mode=="mean" else diff[k]
        if isinstance(o,tuple): return (o[0]-d,)+o[1:]
        o.sample=o.sample-d; return o
    hd=att.register_forward_hook(edit); img=pipe(lab_on[None].expand(32,-1).clone(),latents=noise); hd.remove()
    det=dw.detect_concepts(img)
    print(mode, "smoke present", float(det[:,dw.CONCEPT_INDEX['smoke']].float().mean()), "chimney", float(det[:,dw.CONCEPT_INDEX['chimney']].float().mean()))
