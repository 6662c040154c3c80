#0  try_charge_memcg (memcg=memcg@entry=0xffff888005fca000, gfp_mask=gfp_mask@entry=3264, nr_pages=nr_pages@entry=1) at mm/memcontrol.c:2629
#1  0xffffffff8134b93d in try_charge (nr_pages=1, gfp_mask=3264, memcg=0xffff888005fca000) at mm/memcontrol.c:2774
#2  charge_memcg (folio=folio@entry=0xffffea0000148000, memcg=memcg@entry=0xffff888005fca000, gfp=gfp@entry=3264) at mm/memcontrol.c:6855
#3  0xffffffff8134d124 in __mem_cgroup_charge (folio=0xffffea0000148000, mm=<optimized out>, gfp=gfp@entry=3264) at mm/memcontrol.c:6876
#4  0xffffffff812dcc56 in mem_cgroup_charge (gfp=3264, mm=<optimized out>, folio=<optimized out>) at include/linux/memcontrol.h:667
#5  do_anonymous_page (vmf=0xffffc90000637df8) at mm/memory.c:4111
#6  handle_pte_fault (vmf=0xffffc90000637df8) at mm/memory.c:4943
#7  __handle_mm_fault (vma=vma@entry=0xffff888005e1a3a0, address=address@entry=140159412113408, flags=flags@entry=597) at mm/memory.c:5085
#8  0xffffffff812dd600 in handle_mm_fault (vma=0xffff888005e1a3a0, address=address@entry=140159412113408, flags=flags@entry=597, regs=regs@entry=0xffffc90000637f58) at mm/memory.c:5231
#9  0xffffffff810f3ca3 in do_user_addr_fault (regs=regs@entry=0xffffc90000637f58, error_code=error_code@entry=6, address=address@entry=140159412113408) at arch/x86/mm/fault.c:1407
#10 0xffffffff81fa7e22 in handle_page_fault (address=140159412113408, error_code=6, regs=0xffffc90000637f58) at arch/x86/mm/fault.c:1498
#11 exc_page_fault (regs=0xffffc90000637f58, error_code=6) at arch/x86/mm/fault.c:1554
#12 0xffffffff82000b62 in asm_exc_page_fault () at ./arch/x86/include/asm/idtentry.h:570
#13 0x0000000000000000 in fixed_percpu_data ()
#14 0x00007f79ea4f7010 in ?? ()
