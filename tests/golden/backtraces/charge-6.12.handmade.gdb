#0  try_charge_memcg (memcg=memcg@entry=0xffff888005e41000, gfp_mask=gfp_mask@entry=3264, nr_pages=nr_pages@entry=1) at mm/memcontrol.c:2229
#1  0xffffffff8140d5a2 in try_charge (nr_pages=1, gfp_mask=3264, memcg=0xffff888005e41000) at mm/memcontrol-v1.h:20
#2  charge_memcg (folio=folio@entry=0xffffea0000150000, memcg=memcg@entry=0xffff888005e41000, gfp=gfp@entry=3264) at mm/memcontrol.c:4487
#3  __mem_cgroup_charge (folio=folio@entry=0xffffea0000150000, mm=<optimized out>, gfp=gfp@entry=3264) at mm/memcontrol.c:4504
#4  0xffffffff8136c1f2 in mem_cgroup_charge (gfp=3264, mm=<optimized out>, folio=0xffffea0000150000) at ./include/linux/memcontrol.h:653
#5  folio_prealloc (need_zero=true, addr=<optimized out>, vma=0xffff888005e1a3a0, src_mm=<optimized out>) at mm/memory.c:1064
#6  alloc_anon_folio (vmf=0xffffc9000065bdf8) at mm/memory.c:4720
#7  do_anonymous_page (vmf=0xffffc9000065bdf8) at mm/memory.c:4776
#8  0xffffffff8137181e in do_pte_missing (vmf=0xffffc9000065bdf8) at mm/memory.c:4018
#9  handle_pte_fault (vmf=0xffffc9000065bdf8) at mm/memory.c:5822
#10 __handle_mm_fault (vma=vma@entry=0xffff888005e1a3a0, address=address@entry=140455209136128, flags=flags@entry=597) at mm/memory.c:5965
#11 0xffffffff81372a80 in handle_mm_fault (vma=0xffff888005e1a3a0, address=address@entry=140455209136128, flags=flags@entry=597, regs=regs@entry=0xffffc9000065bf58) at mm/memory.c:6133
#12 0xffffffff810ebd3d in do_user_addr_fault (regs=regs@entry=0xffffc9000065bf58, error_code=error_code@entry=6, address=address@entry=140455209136128) at arch/x86/mm/fault.c:1338
#13 0xffffffff81b2f4a6 in handle_page_fault (address=140455209136128, error_code=6, regs=0xffffc9000065bf58) at arch/x86/mm/fault.c:1481
#14 exc_page_fault (regs=0xffffc9000065bf58, error_code=6) at arch/x86/mm/fault.c:1539
#15 0xffffffff81c00bc6 in asm_exc_page_fault () at ./arch/x86/include/asm/idtentry.h:623
#16 0x0000000000000000 in ?? ()
