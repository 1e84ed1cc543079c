set pagination off
set $c = cpus_queue.tqh_first
while ($c)
  set $x = (X86CPU *)$c
  printf "cpu %d halted=%d ireq=0x%x eip=0x%lx eflags=0x%lx hflags=0x%x\n", $c->cpu_index, $c->halted, $c->interrupt_request, $x->env.eip, $x->env.eflags, $x->env.hflags
  set $a = $x->apic_state
  printf "   apic id=%d irr7..0 %x %x isr2 %x tpr %x sv %x lvt0 %x\n", $a->initial_apic_id, $a->irr[2], $a->irr[7], $a->isr[2], $a->tpr, $a->spurious_vec, $a->lvt[3]
  set $c = $c->node.tqe_next
end
detach
