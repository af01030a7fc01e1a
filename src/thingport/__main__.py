from thingport.cli import main

main()
